"""Exercises that share one child process (grader.sandbox.sharing, and the Zygote's groups).

A group runs its exercises one after another in one child: the answer key stays out of reach (an input
that is autograd's answer, batch norm's dhpreact, reaches the child only for its own exercise, after the
members before it answered, and only members it gives nothing away to come after it), a hang or a crash
costs only the exercise in progress, hidden values are never printed, and a submission that could monkeypatch runs every exercise alone. The probes here import the
grader's modules, which the static scan forbids, so it is widened (as in test_hostile.py).
"""

import pytest

from grader.config import IntegrityConfig
from grader.course.registry import EXERCISES
from grader.sandbox import sharing
from grader.sandbox.inside import harness
from grader.sandbox.inside.session import Zygote
from grader.submission.integrity import RULES
from conftest import SOLUTIONS

# The course's group: batchnorm (private dhpreact), then embedding (private demb), which it names safe.
SHARED = ["atomic", "cross_entropy", "train", "batchnorm", "embedding"]

# A helper module the probed exercises import: which process runs them, and which of autograd's answers
# (dhpreact, demb) that process holds with a value, at each call.
PROBE = '''import os
import grader.sandbox.inside.harness as _harness

SEEN = []


def note(name):
    held = sorted({key for tensors in _harness.PRELOADED.values() for key, t in tensors.items()
                   if key in ("dhpreact", "demb") and bool(t.abs().sum() > 0)})
    SEEN.append((name, os.getpid(), held))
    print("PROBE", SEEN, flush=True)
'''


def probed(file: str, function: str) -> str:
    """The solution's `file`, its `function` wrapped to call the probe first."""
    source = (SOLUTIONS / file).read_text().replace(f"def {function}(", f"def _solution_{function}(", 1)
    return (source + f"\n\nimport shared_probe\n\n\ndef {function}(**kwargs):\n"
            f"    shared_probe.note({file[:-3]!r})\n    return _solution_{function}(**kwargs)\n")


@pytest.fixture
def lenient(config):
    return config.model_copy(update={"integrity": IntegrityConfig(allow=list(RULES))})


def test_a_group_shares_one_child_and_autograds_answers_reach_it_only_in_their_turn(
        submission, grade_it, lenient, all_cases):
    sub = submission(replace={"shared_probe.py": PROBE, "atomic.py": probed("atomic.py", "backward_atomic"),
                              "batchnorm.py": probed("batchnorm.py", "batchnorm_backward"),
                              "embedding.py": probed("embedding.py", "embedding_backward")})
    report = grade_it(sub, cases=all_cases, config=lenient, timeout=20)
    assert report.score == report.max_score, [(e.id, e.status, e.message) for e in report.exercises]
    last = report.output.stdout.strip().splitlines()[-1]  # the embedding's last public call sees every call before
    seen = eval(last.removeprefix("PROBE "))  # noqa: S307 - our own probe's repr of a list of tuples
    assert [name for name, _, _ in seen][-1] == "embedding"
    assert {name for name, _, _ in seen} == {"atomic", "batchnorm", "embedding"}
    assert len({pid for _, pid, _ in seen}) == 1  # one process ran all three
    assert all(held == [] for name, _, held in seen if name == "atomic")  # neither answer was there for atomic
    assert all(held == ["dhpreact"] for name, _, held in seen if name == "batchnorm")  # demb not yet
    assert all("demb" in held for name, _, held in seen if name == "embedding")


HANGS = "def cross_entropy_backward(logits, Yb):\n    while True:\n        pass\n"
EXITS = "import os\n\n\ndef backward_fast(**kwargs):\n    os._exit(3)\n"


def test_a_hang_and_a_crash_in_a_group_cost_only_their_own_exercise(submission, grade_it, lenient, all_cases):
    report = grade_it(submission(replace={"cross_entropy.py": HANGS, "train.py": EXITS}), cases=all_cases,
                      config=lenient, timeout=2)
    assert report.exercise("cross_entropy").status == "timeout"
    assert report.exercise("train").status == "crashed" and "code 3" in report.exercise("train").message
    for ex_id in ("atomic", "batchnorm", "embedding"):  # before, after and outside the group, hidden cases too
        exercise = report.exercise(ex_id)
        assert exercise.score == exercise.max_score, (ex_id, exercise.status, exercise.message)
        assert any(c.visibility == "hidden" and c.passed for check in exercise.checks for c in check.cases)


PRINTS_INPUTS = ((SOLUTIONS / "cross_entropy.py").read_text()
                 .replace("def cross_entropy_backward(logits, Yb):",
                          "def cross_entropy_backward(logits, Yb):\n    print('SEEN', repr(Yb.tolist()), flush=True)"))


def test_a_group_members_hidden_values_are_never_printed(submission, grade_it, lenient, all_cases):
    report = grade_it(submission(replace={"cross_entropy.py": PRINTS_INPUTS}), cases=all_cases, config=lenient,
                      timeout=20)
    assert report.score == report.max_score, [(e.id, e.status, e.message) for e in report.exercises]
    text = report.model_dump_json()
    for case in all_cases:
        assert (repr(case.inputs["Yb"].tolist()) in text) != case.spec.hidden, case.spec.name


# --- which exercises may share ------------------------------------------------------------------------

def _entries(config) -> list[dict]:
    return [EXERCISES[ex_id].plan(config) for ex_id in config.exercises]


def test_the_course_shares_one_child_for_every_exercise(config, tmp_path):
    (tmp_path / "atomic.py").write_text((SOLUTIONS / "atomic.py").read_text())
    assert sharing.groups(_entries(config), tmp_path) == [SHARED]


def test_only_exercises_named_safe_follow_one_with_private_inputs(config, tmp_path):
    entries = _entries(config)
    by_id = {e["id"]: e for e in entries}
    unnamed = [{**e, "private_inputs_safe_for": []} if e["id"] == "batchnorm" else e for e in entries]
    assert sharing.groups(unnamed, tmp_path) == [SHARED[:-1], ["embedding"]]  # batch norm closes the group
    # the plan's order does not matter: batch norm still goes before the embedding it names safe
    reordered = [e for e in entries if e["id"] != "batchnorm"] + [by_id["batchnorm"]]
    assert sharing.groups(reordered, tmp_path) == [SHARED]
    # two that name each other: the plan's order; one that names none of the rest: the first closes it
    both = [{**e, "private_inputs_safe_for": ["batchnorm"]} if e["id"] == "embedding" else e for e in reordered]
    assert sharing.groups(both, tmp_path)[0][-2:] == ["embedding", "batchnorm"]
    third = {**by_id["embedding"], "id": "third", "private_inputs_safe_for": []}
    groups = sharing.groups([*entries, third], tmp_path)
    assert groups[0][-1] == "batchnorm" and ["embedding"] in groups and ["third"] in groups


@pytest.mark.parametrize("source", [
    "import torch\ntorch.exp = lambda t: t\n",                      # a monkeypatch
    "import torch\n\ndef f(t):\n    t.data = t\n",                   # any attribute store
    "import math\ndel math.pi\n",
    "import torch\nsetattr(torch, 'exp', abs)\n",
    "def f(:\n",                                                      # does not parse: nothing is known
], ids=["monkeypatch", "attribute", "del", "setattr", "syntax"])
def test_a_submission_that_could_reach_past_its_exercise_runs_each_alone(config, tmp_path, source):
    (tmp_path / "helper.py").write_text(source)
    assert sharing.groups(_entries(config), tmp_path) == [[ex_id] for ex_id in config.exercises]


def test_the_lecture_notebooks_cells_run_alone(config, tmp_path):
    entries = [{**e, "mode": "lecture"} if e["id"] == "cross_entropy" else e for e in _entries(config)]
    groups = sharing.groups(entries, tmp_path)
    assert ["cross_entropy"] in groups and ["atomic", "train", "batchnorm", "embedding"] in groups


def test_the_zygote_checks_the_groups_again(config, tmp_path):
    """The plan is the grader's, but the worker keeps its own rule: after private inputs, only members named safe."""
    plan = {"cwd": str(tmp_path), "exercises": _entries(config),
            "groups": [["batchnorm", "atomic"], ["cross_entropy", "train"], ["nosuch", "embedding"]]}
    order = [[ex["id"] for ex in group] for group in Zygote(plan, -1, None).groups()]
    assert order == [["batchnorm"], ["atomic"], ["cross_entropy", "train"], ["embedding"]]
    plan["groups"] = [["train", "embedding", "batchnorm"], ["atomic", "batchnorm", "embedding"]]
    order = [[ex["id"] for ex in group] for group in Zygote(plan, -1, None).groups()]
    assert order == [["train"], ["embedding"], ["batchnorm"], ["atomic"], ["cross_entropy"]]  # the embedding
    #                                                                        names nothing safe; the rest alone
    plan["groups"] = [["atomic", "batchnorm", "embedding"]]
    assert [[ex["id"] for ex in group] for group in Zygote(plan, -1, None).groups()][0] == \
        ["atomic", "batchnorm", "embedding"]


def test_a_groups_child_drops_and_zeroes_every_piped_tensor_but_its_first_members():
    """harness.restrict for a group: its members' file inputs stay; a piped one (dhpreact) is wiped even though its
    member needs it: the Zygote sends it again at that member's turn. The first member's stays (a fresh child
    for the rest of a group, after a crash: nothing runs before it)."""
    import torch
    from safetensors.torch import save

    saved, piped = dict(harness.PRELOADED), set(harness.PIPED)
    try:
        harness.PRELOADED.clear()
        harness.PRELOADED["case-x.safetensors"] = {"logits": torch.ones(2), "bnraw": torch.ones(2), "x": torch.ones(2)}
        harness.add_inputs("case-x.safetensors", save({"dhpreact": torch.ones(2)}))
        dhpreact = harness.PRELOADED["case-x.safetensors"]["dhpreact"]
        harness.restrict([{"id": "cross_entropy", "tensor_args": ["logits"]},
                          {"id": "batchnorm", "tensor_args": ["dhpreact", "bnraw"]}])
        assert sorted(harness.PRELOADED["case-x.safetensors"]) == ["bnraw", "logits"]
        assert dhpreact.abs().sum() == 0
        harness.add_inputs("case-x.safetensors", save({"dhpreact": torch.ones(2), "demb": torch.ones(2)}))
        demb = harness.PRELOADED["case-x.safetensors"]["demb"]
        harness.restrict([{"id": "batchnorm", "tensor_args": ["dhpreact", "bnraw"]},
                          {"id": "embedding", "tensor_args": ["demb"]}])
        assert sorted(harness.PRELOADED["case-x.safetensors"]) == ["bnraw", "dhpreact"]
        assert harness.PRELOADED["case-x.safetensors"]["dhpreact"].abs().sum() == 2 and demb.abs().sum() == 0
    finally:
        harness.PRELOADED.clear()
        harness.PRELOADED.update(saved)
        harness.PIPED.clear()
        harness.PIPED.update(piped)


def test_sharing_is_decided_once_per_source_and_remembers_no_source(tmp_path, monkeypatch):
    decided = []
    real = sharing._finds_rebinding
    monkeypatch.setattr(sharing, "_finds_rebinding", lambda source: decided.append(source) or real(source))
    sharing._REBINDS.clear()
    source = "x = 1\n" + "# pasted data\n" * 50_000  # large, as a course's files can be
    (tmp_path / "a.py").write_text(source)
    assert sharing.may_share(tmp_path) and sharing.may_share(tmp_path)
    assert decided == [source]  # a batch's copies of one file: decided once
    assert all(isinstance(k, bytes) and len(k) == 16 for k in sharing._REBINDS)  # by digest: the text is let go
    monkeypatch.setattr(sharing, "MAX_REMEMBERED", 3)
    for i in range(10):
        (tmp_path / "a.py").write_text(f"x = {i}\n")
        assert sharing.may_share(tmp_path)
    assert len(sharing._REBINDS) == 3
    (tmp_path / "a.py").write_text("import torch\ntorch.exp = torch.log\n")  # a monkeypatch
    assert not sharing.may_share(tmp_path) and not sharing.may_share(tmp_path)


def test_the_scan_and_the_sharing_check_parse_a_new_file_once(tmp_path, monkeypatch):
    from grader.submission.integrity import driver

    parsed = []
    real_parse = driver._parse
    monkeypatch.setattr(driver, "_parse", lambda source: parsed.append(source) or real_parse(source))
    source = "import torch\n\n\ndef helper(t):\n    t.data = t  # an attribute store: no sharing\n    return t\n"
    (tmp_path / "helper.py").write_text(source)
    sharing._REBINDS.clear()
    assert driver.scan({"helper.py": source}) == []  # the scan first, as grading does
    assert not sharing.may_share(tmp_path)  # then the worker's plan: the same nodes, nothing parsed again
    assert parsed == [source]


def test_the_scans_walk_is_ast_walk_node_for_node():
    import ast

    from grader.submission.integrity.driver import walk

    for path in [*SOLUTIONS.glob("*.py"), *sorted(SOLUTIONS.parent.joinpath("grader").rglob("*.py"))[:60]]:
        tree = ast.parse(path.read_text())
        expected = list(ast.walk(tree))
        found = walk(tree)
        assert len(found) == len(expected) and all(a is b for a, b in zip(found, expected)), path


def test_the_kept_trees_stay_bounded_whatever_the_files(monkeypatch):
    from grader.submission.integrity import driver

    monkeypatch.setattr(driver, "_recent", {})
    huge = "x = 1\n" * (driver.RECENT_MAX_CHARS // 6 + 1)  # a file far larger than a student writes
    assert driver.source_nodes(huge)[0].__class__.__name__ == "Module" and huge not in driver._recent
    for i in range(driver.RECENT + 10):
        driver.source_nodes(f"y = {i}\n")
    assert len(driver._recent) == driver.RECENT and "y = 0\n" not in driver._recent  # the oldest went first
    large = ["z = 1\n" * (driver.RECENT_MAX_CHARS // 6) + f"# {i}\n" for i in range(8)]  # each kept, not all
    for source in large:
        assert driver.source_nodes(source) is not None and source in driver._recent
    assert sum(map(len, driver._recent)) <= driver.RECENT_TOTAL_CHARS and large[0] not in driver._recent
