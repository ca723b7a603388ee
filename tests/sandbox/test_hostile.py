"""Hostile submissions are contained: they cannot forge, hang, crash, leak or vandalise.

Each submission is the reference solutions with a few files replaced by
attacks from tests/hostile/ (one attack per exercise, so the assertions stay
clear and each grade starts only one worker). For every one: the attacked
exercises score 0 with a message that says what happened, the untouched
ones keep full marks, the run ends in bounded time, and nothing else
happens: no process outlives the grade, no file outside the sandbox changes,
no connection reaches a listener on 127.0.0.1, no secret reaches the report.
These run at the isolation level `auto` picks (bubblewrap here).
"""

import ctypes
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SOLUTIONS, TESTS
from grader.sandbox import levels as sandbox
from grader.cli import main as cli_main
from grader.config import IntegrityConfig, load_config
from grader.course.registry import EXERCISES
from grader.submission.integrity import RULES

HOSTILE = TESTS / "hostile"
TIMEOUT = 3
BOUND = 60.0  # seconds a whole grade may take, whatever the submission does

pytestmark = pytest.mark.skipif(sys.platform != "linux" or not sandbox.level_works("bwrap"),
                                reason="containment is only promised under bubblewrap (and the checks read /proc)")


def attack(name: str, **tokens: str) -> str:
    text = (HOSTILE / name).read_text()
    for key, value in tokens.items():
        text = text.replace(f"__{key}__", value)
    return text


def replaced(*names: str, **tokens: str) -> dict[str, str]:
    """{contract file: attack source} for attack files named `<exercise>__<what>.py`."""
    return {f"{name.split('__')[0]}.py": attack(name, **tokens) for name in names}


# --- watching for side effects -------------------------------------------------------------

def _children_of(root: int) -> list[tuple[int, str]]:
    """Live descendants of `root` (pid, cmdline); orphans come back to us: we are a subreaper."""
    parent, alive = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parent[int(entry)] = int(fields[1])
        alive[int(entry)] = (fields[0] != "Z", cmdline)
    found = []
    for pid in parent:
        p = pid
        while p in parent and p != root and p > 1:
            p = parent[p]
        if p == root and pid != root and alive[pid][0]:
            found.append((pid, alive[pid][1]))
    return found


def _reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _digest(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


@dataclass
class World:
    """Things a submission must not reach, and the checks that it did not."""

    tmp: Path
    secret: str
    token: str
    secret_file: Path
    outside: Path
    out_dir: Path
    listener: socket.socket
    guarded: dict[str, str]

    @property
    def port(self) -> str:
        return str(self.listener.getsockname()[1])

    def targets(self) -> str:
        paths = [ROOT / "grading.yaml", SOLUTIONS / "atomic.py", SOLUTIONS, ROOT / "grader" / "scoring" / "score.py",
                 self.outside, self.out_dir, self.out_dir / "report.json", self.secret_file]
        return repr([str(p) for p in paths])

    def read_paths(self) -> str:
        paths = [self.secret_file, SOLUTIONS / "atomic.py", ROOT / "grading.yaml", self.out_dir / "report.json",
                 "/proc/1/environ", f"/proc/{os.getpid()}/environ"]
        return repr([str(p) for p in paths])

    def assert_untouched(self, report_json: str, started: float) -> None:
        assert time.monotonic() - started < BOUND
        for secret in (self.secret, self.token, self.secret_file.read_text()):
            assert secret not in report_json, "a secret reached the report"
        try:
            connection, _ = self.listener.accept()
            connection.close()
            pytest.fail("the submission reached a listener on 127.0.0.1")
        except BlockingIOError:
            pass
        assert _digest(Path(p) for p in self.guarded) == self.guarded, "a file outside the sandbox changed"
        for folder in (ROOT / "grader", SOLUTIONS, self.out_dir, self.tmp):
            assert not (folder / "planted.txt").exists()
        _reap_orphans()
        deadline = time.monotonic() + 5  # a killed sandbox takes a moment to disappear
        while (stray := _children_of(os.getpid())) and time.monotonic() < deadline:
            time.sleep(0.1)
            _reap_orphans()
        assert not stray, f"processes outlived the grade: {stray}"


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    """Orphaned grandchildren are re-parented to this process, so none can hide from the stray check; for this
    module only (later tests count this process's children: none of ours may be left among them)."""
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    yield
    ctypes.CDLL(None).prctl(36, 0, 0, 0, 0)
    _reap_orphans()


@pytest.fixture
def world(tmp_path, monkeypatch):
    secret, token = f"grader-secret-{uuid.uuid4()}", f"ghp_{uuid.uuid4().hex}"
    monkeypatch.setenv("GRADER_SECRET", secret)
    monkeypatch.setenv("GITHUB_TOKEN", token)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(f"file-secret-{uuid.uuid4()}")
    outside = tmp_path / "outside.txt"
    outside.write_text("must stay as it is")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    guarded = _digest([ROOT / "grading.yaml", *SOLUTIONS.iterdir(), outside, secret_file, *HOSTILE.iterdir()])
    yield World(tmp_path, secret, token, secret_file, outside, out_dir, listener, guarded)
    listener.close()


def scan_off(config):
    """The config with the static scan widened to everything: it would stop most attacks here before they run,
    and these tests are about what happens to one that gets through."""
    return config.model_copy(update={"integrity": IntegrityConfig(allow=list(RULES))})


def grade_contained(world, grade_it, folder, **kwargs):
    started = time.monotonic()
    kwargs.setdefault("config", scan_off(load_config(ROOT / "grading.yaml")))
    report = grade_it(folder, timeout=TIMEOUT, **kwargs)
    world.assert_untouched(report.model_dump_json(), started)
    return report


def assert_attacked(report, ex_id: str, statuses: set[str], *words: str) -> None:
    """Scored 0, with a status and a message (or traceback) that say what happened."""
    ex = report.exercise(ex_id)
    text = " ".join([ex.message, ex.traceback or "", *(c.message for c in ex.checks)]).lower()
    assert ex.score == 0, f"{ex_id} scored {ex.score}"
    assert ex.status in statuses, f"{ex_id}: {ex.status} ({ex.message})"
    for word in words:
        assert word.lower() in text, f"{ex_id}: {word!r} not in {text[:500]!r}"


def assert_full_marks(report, *ex_ids: str) -> None:
    for ex_id in ex_ids:
        ex = report.exercise(ex_id)
        assert ex.score == ex.max_score, f"{ex_id}: {ex.status} {ex.message}"


# --- time and memory --------------------------------------------------------------------------

def test_loops_sleeps_and_memory_bombs(world, submission, grade_it):
    sub = submission(replace=replaced("atomic__infinite_loop.py", "batchnorm__sleep_forever.py",
                                      "embedding__memory_bomb.py", "cross_entropy__memory_creep.py"))
    report = grade_contained(world, grade_it, sub)
    assert_attacked(report, "atomic", {"timeout"}, f"did not finish within {TIMEOUT} s")
    assert_attacked(report, "batchnorm", {"timeout"}, "did not finish")
    assert_attacked(report, "embedding", {"failed", "error", "crashed"}, "ran out of memory (limit 4096 MB)")
    assert_attacked(report, "cross_entropy", {"failed", "error", "crashed"}, "out of memory")
    assert_full_marks(report, "train")
    assert report.isolation.workers_started == 1  # the worker's children took the blows


# --- exits, kills and processes -----------------------------------------------------------

def test_exits_and_kills_cost_only_their_exercise(world, submission, grade_it):
    sub = submission(replace=replaced("atomic__sys_exit_at_import.py", "batchnorm__os_exit.py",
                                      "cross_entropy__kill_self.py", "embedding__kill_parent.py"))
    report = grade_contained(world, grade_it, sub)
    assert_attacked(report, "atomic", {"error"}, "sys.exit(0)", "importing atomic.py")
    assert_attacked(report, "batchnorm", {"crashed"}, "exited (code 0) before returning all its answers")
    assert_attacked(report, "cross_entropy", {"crashed"}, "killed by SIGKILL")
    assert_attacked(report, "embedding", {"failed", "error"}, "the grader is still alive")
    assert_full_marks(report, "train")


def test_no_process_outlives_the_grade(world, submission, grade_it):
    sub = submission(replace=replaced("atomic__fork.py", "batchnorm__subprocess.py",
                                      "cross_entropy__multiprocessing.py", "embedding__lingering_thread.py"))
    report = grade_contained(world, grade_it, sub)
    for ex_id in ("atomic", "batchnorm", "cross_entropy"):
        assert_attacked(report, ex_id, {"failed", "error"}, "does not allow", "starting processes")
    assert_attacked(report, "embedding", {"failed"}, "not implemented")
    assert_full_marks(report, "train")


# --- output and the answer channel --------------------------------------------------------

def test_output_floods_fakes_and_forged_frames(world, submission, grade_it, config):
    sub = submission(replace=replaced("atomic__huge_stdout.py", "cross_entropy__fake_json.py",
                                      "batchnorm__forged_frames.py", "embedding__binary_output.py"))
    report = grade_contained(world, grade_it, sub)
    assert_attacked(report, "atomic", {"failed"}, "expected a dict")
    assert_attacked(report, "cross_entropy", {"failed"}, "not implemented")
    assert_attacked(report, "batchnorm", {"failed"}, "wrong values")
    assert_attacked(report, "embedding", {"failed"}, "not implemented")
    assert_full_marks(report, "train")
    assert report.score == 20
    cap = config.limits.output_bytes + 200
    assert len(report.output.stdout) < cap and len(report.output.stderr) < cap
    assert report.output.dropped_bytes > 100 << 20
    assert '"score": 100' in report.output.stdout  # kept as output, never read as a result


# --- the filesystem, secrets and the network ----------------------------------------------

def test_vandalism_secrets_network_and_disk(world, submission, tmp_path):
    sub = submission(replace=replaced("atomic__vandal.py", "embedding__read_secrets.py", "cross_entropy__network.py",
                                      "batchnorm__fill_disk.py", TARGETS=world.targets(),
                                      READ_PATHS=world.read_paths(), PORT=world.port))
    out = world.out_dir / "report.json"
    out.write_text("the previous report")
    policy = yaml.safe_load((ROOT / "grading.yaml").read_text())
    policy["integrity"] = {"allow": list(RULES)}  # the scan would stop os and open before they run
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(yaml.safe_dump(policy))
    started = time.monotonic()
    code = cli_main(["grade", str(sub), "--out", str(out), "--timeout", str(TIMEOUT), "--quiet",
                     "--config", str(lenient), "--secret-file", str(world.secret_file)])
    assert code == 0
    text = out.read_text()
    world.assert_untouched(text, started)
    report = json.loads(text)
    assert report["isolation"]["level"] == "bwrap"
    exercises = {e["id"]: e for e in report["exercises"]}
    for ex_id in ("atomic", "embedding", "cross_entropy", "batchnorm"):
        assert exercises[ex_id]["score"] == 0, ex_id
    assert "nothing to return" in exercises["atomic"]["message"]
    assert "no network" in exercises["cross_entropy"]["message"]
    assert "wrote more than the grader allows (no space left" in exercises["batchnorm"]["message"].lower()
    assert exercises["train"]["score"] == exercises["train"]["max_score"]
    assert "BEGIN SOLUTION" not in text and "rtol: auto" not in text  # solutions/ and grading.yaml stayed hidden
    assert "vandalised" not in text and "must stay as it is" in world.outside.read_text()
    assert not list(world.tmp.glob("**/fill-*"))


# --- lies: monkeypatching, tensor subclasses, views, NaN ------------------------------------

def test_lies_do_not_pass(world, submission, grade_it):
    sub = submission(replace=replaced("atomic__monkeypatch.py", "cross_entropy__lying_subclass.py",
                                      "embedding__expanded_view.py", "batchnorm__nan_inf.py"))
    report = grade_contained(world, grade_it, sub)
    assert_attacked(report, "atomic", {"failed", "crashed", "error", "partial"})
    assert_attacked(report, "cross_entropy", {"failed"}, "tensor subclass")
    assert_attacked(report, "embedding", {"failed"}, "far larger than expected")
    assert_attacked(report, "batchnorm", {"failed"}, "nan")
    assert_full_marks(report, "train")  # the monkeypatching stayed in atomic's own process


# --- errors -------------------------------------------------------------------------------

def test_syntax_errors_recursion_and_segfaults(world, submission, grade_it):
    sub = submission(replace=replaced("atomic__syntax_error.py", "cross_entropy__infinite_recursion.py",
                                      "batchnorm__segfault.py", "embedding__keyboard_interrupt.py"))
    report = grade_contained(world, grade_it, sub)
    assert_attacked(report, "atomic", {"error"}, "SyntaxError")
    assert_attacked(report, "cross_entropy", {"failed", "error"}, "RecursionError")
    assert_attacked(report, "batchnorm", {"crashed"}, "killed by SIGSEGV")
    assert_attacked(report, "embedding", {"failed", "error"}, "Escape")
    assert_full_marks(report, "train")


# --- autograd -------------------------------------------------------------------------------

def test_autograd_is_not_allowed(world, submission, grade_it, config):
    files = replaced("atomic__backward.py", "batchnorm__uses_helper.py", "cross_entropy__obfuscated.py",
                     "embedding__functorch.py", "train__exec.py")
    files["autograd_helper.py"] = attack("autograd_helper.py")
    report = grade_contained(world, grade_it, submission(replace=files), config=config)
    assert_attacked(report, "atomic", {"not_allowed"}, "atomic.py line 6", ".requires_grad_()", "by hand")
    assert_attacked(report, "batchnorm", {"not_allowed"}, "autograd_helper.py line 2", "imported by batchnorm.py")
    assert_attacked(report, "cross_entropy", {"not_allowed"}, "cross_entropy.py line")
    assert_attacked(report, "embedding", {"not_allowed"}, "torch.func")
    assert_attacked(report, "train", {"not_allowed"}, "importlib")
    patterns = {(f.exercise, f.pattern) for f in report.integrity}
    assert ("atomic", ".backward()") in patterns and ("atomic", ".grad") in patterns
    assert {"getattr", "eval", "__import__"} <= {f.pattern.split("(")[0] for f in report.integrity
                                                if f.exercise == "cross_entropy"}
    for ex in report.exercises:  # every check of a flagged exercise names the construct
        assert all(c.score == 0 and ex.file in c.message or "autograd_helper.py" in c.message for c in ex.checks)
        assert all(case.status == "not_allowed" for c in ex.checks for case in c.cases)
    assert report.isolation.workers_started == 0  # flagged exercises are not even run


def test_the_runtime_guard_catches_what_the_scan_was_told_to_allow(world, submission, grade_it, config):
    lenient = config.model_copy(update={"integrity": IntegrityConfig(allow=list(RULES))})
    sub = submission(replace=replaced("atomic__runtime_backward.py", "cross_entropy__runtime_enable_grad.py",
                                      "batchnorm__runtime_thread.py", "embedding__runtime_func.py",
                                      "train__runtime_inference_mode.py"))
    report = grade_contained(world, grade_it, sub, config=lenient)
    caught = {f.exercise: f for f in report.integrity}
    assert set(caught) == set(EXERCISES)
    assert caught["atomic"].pattern == ".backward()" and caught["atomic"].file == "atomic.py"
    assert caught["atomic"].line == 8
    assert "enable_grad" in caught["cross_entropy"].pattern
    assert caught["batchnorm"].pattern == "torch.autograd.grad"  # and grad mode stayed off in the thread
    assert "torch.func" in caught["embedding"].pattern
    assert "inference_mode" in caught["train"].pattern
    for ex_id in EXERCISES:
        assert_attacked(report, ex_id, {"not_allowed"}, "is not allowed", "by hand")


# --- correct code is left alone -----------------------------------------------------------

def test_a_correct_solution_with_threads_keeps_full_marks(world, submission, grade_it, config):
    reference = (SOLUTIONS / "atomic.py").read_text().replace("def backward_atomic(", "def _reference(")
    sub = submission(replace={"atomic.py": reference + "\n\n" + attack("atomic__threads_correct.py")})
    report = grade_contained(world, grade_it, sub, config=config)
    assert report.score == report.max_score, [(e.id, e.message) for e in report.exercises]
    assert report.integrity == []


def test_the_report_is_written_when_everything_fails(world, submission):
    broken = {ex.file: "def nothing(:\n" for ex in EXERCISES.values()}
    out = world.out_dir / "all-failed.json"
    code = cli_main(["grade", str(submission(replace=broken)), "--out", str(out), "--quiet", "--timeout", "3",
                     "--config", str(ROOT / "grading.yaml")])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["score"] == 0 and all(e["status"] == "error" for e in report["exercises"])
    assert [p.name for p in world.out_dir.iterdir()] == ["all-failed.json"]  # no temporary file left behind


def test_hidden_inputs_never_reach_the_report(world, submission, grade_it, all_cases):
    report = grade_contained(world, grade_it, submission(replace=replaced("embedding__leak_hidden_inputs.py")),
                             cases=all_cases)
    text = report.model_dump_json()
    assert "LEAK" in report.output.stdout and "case-lecture.safetensors" in report.output.stdout  # it did run
    assert "case-hidden-1.safetensors" not in text  # the hidden inputs were not there while it could print
    for case in all_cases:
        values = repr(case.inputs["Xb"].tolist())
        assert (values in text) != case.spec.hidden, case.spec.name
    assert_attacked(report, "embedding", {"failed"}, "LEAK")
    assert_full_marks(report, "atomic", "cross_entropy", "batchnorm", "train")


# --- the answer key: ways around the ban, the grader's own code, other exercises' inputs ------

AROUND = ("atomic__alias_getattr.py", "batchnorm__aten_kernel.py", "cross_entropy__aten_kernels.py",
          "embedding__aten_kernel.py", "train__tanh_backward.py")


def _line_of(name: str, text: str) -> int:
    """The first line of attack file `name` that holds `text`."""
    return next(i for i, line in enumerate(attack(name).splitlines(), 1) if text in line)


def test_ways_around_the_ban_are_stopped_by_the_scan(world, submission, grade_it, config):
    report = grade_contained(world, grade_it, submission(replace=replaced(*AROUND)), config=config)
    expected = {"atomic": ("atomic__alias_getattr.py", "_ga = getattr"),
                "batchnorm": ("batchnorm__aten_kernel.py", "torch.ops.aten.native_batch_norm_backward"),
                "cross_entropy": ("cross_entropy__aten_kernels.py", "nll_loss_backward"),
                "embedding": ("embedding__aten_kernel.py", "torch.ops.aten.embedding_dense_backward"),
                "train": ("train__tanh_backward.py", "torch.ops.aten.tanh_backward")}
    for ex_id, (name, text) in expected.items():
        assert_attacked(report, ex_id, {"not_allowed"}, f"{EXERCISES[ex_id].file} line", "is not allowed")
        assert _line_of(name, text) in {f.line for f in report.integrity if f.exercise == ex_id}, ex_id
    assert report.isolation.workers_started == 0  # flagged exercises are not even run


def test_ways_around_the_ban_are_stopped_at_run_time(world, submission, grade_it):
    report = grade_contained(world, grade_it, submission(replace=replaced(*AROUND)))
    patterns = {}
    for f in report.integrity:
        assert f.file == EXERCISES[f.exercise].file and f.line, f  # each names the student's line
        patterns.setdefault(f.exercise, set()).add(f.pattern)
    assert "torch.enable_grad / set_grad_enabled(True)" in patterns["atomic"]
    assert "the autograd engine (run_backward)" in patterns["atomic"]
    assert "torch.ops.aten.native_batch_norm_backward (a backward kernel)" in patterns["batchnorm"]
    assert {"torch.ops.aten.nll_loss_backward (a backward kernel)",
            "torch.ops.aten._log_softmax_backward_data (a backward kernel)",
            "torch.ops.aten._softmax_backward_data (a backward kernel)"} <= patterns["cross_entropy"]
    assert {"torch.ops.aten.embedding_dense_backward (a backward kernel)",
            "torch.ops.aten.embedding_backward (a backward kernel)"} <= patterns["embedding"]
    assert "torch.ops.aten.tanh_backward (a backward kernel)" in patterns["train"]
    for ex_id in EXERCISES:
        assert_attacked(report, ex_id, {"not_allowed"}, "is not allowed", "by hand")


def test_the_answer_key_is_out_of_reach(world, submission, grade_it):
    report = grade_contained(world, grade_it, submission(replace=replaced("atomic__copy_inputs.py",
                                                                          "train__grader_cases.py")))
    assert "COPIED []" in report.output.stdout  # neither in its arguments, nor in memory, nor on disk
    atomic = report.exercise("atomic")
    assert atomic.score == 0
    assert {c.name: c.status for c in atomic.checks}["hpreact"] == "failed"
    assert_attacked(report, "train", {"error"}, "importing train.py", "ModuleNotFoundError")
    assert "grader.course.cases" in (report.exercise("train").traceback or "")
    assert_full_marks(report, "cross_entropy", "batchnorm", "embedding")


def _packed(Xb) -> str:
    """As embedding__exfiltrate_findings.py packs a case's inputs."""
    return "9" + "".join(f"{v:02d}" for v in Xb.reshape(-1).tolist())


def test_hidden_cases_say_nothing_but_pass_or_fail(world, submission, grade_it, all_cases):
    from grader.outputs.gradescope import gradescope_results
    from grader.outputs.junit import junit_xml
    from grader.outputs.markdown import render_markdown

    report = grade_contained(world, grade_it, submission(replace=replaced("embedding__exfiltrate_findings.py")),
                             cases=all_cases)
    views = {"report": report.model_dump_json(), "gradescope": json.dumps(gradescope_results(report)),
             "markdown": render_markdown(report), "junit": junit_xml(report)}
    public = [c for c in all_cases if not c.spec.hidden]
    hidden = [c for c in all_cases if c.spec.hidden]
    assert hidden and public
    assert any("LEAKM" + _packed(c.inputs["Xb"])[:60] in views["report"] for c in public)  # it did run
    for case in hidden:
        secret = _packed(case.inputs["Xb"])
        for view, text in views.items():
            for chunk in (secret[i:i + 24] for i in range(0, len(secret) - 24, 24)):
                assert chunk not in text, f"{case.spec.name} leaked into the {view}"
    files = {f.file for f in report.integrity}
    assert files == {"embedding.py"}  # forged file names never pass
    assert all(f.line is None or 1 <= f.line <= len(attack("embedding__exfiltrate_findings.py").splitlines())
               for f in report.integrity)
    line = _line_of("embedding__exfiltrate_findings.py", "torch.ops.aten.embedding_dense_backward")
    assert any(f.line == line and "embedding_dense_backward" in f.pattern for f in report.integrity)
    assert_attacked(report, "embedding", {"not_allowed"}, "embedding.py")
    assert_full_marks(report, "atomic", "cross_entropy", "batchnorm", "train")


# --- round two of the ban: frames, shadowing files, format fields (with hidden cases on) ------------

ROUND_TWO = ("atomic__frame_walk.py", "cross_entropy__shadow_ctypes.py", "batchnorm__format_fields.py")


@pytest.fixture(scope="module")
def round_two_files():
    files = replaced(*ROUND_TWO)
    files["ctypes.py"] = "CDLL = c_bool = None  # makes `import ctypes` look like the submission's own\n"
    return files


def test_frames_shadowing_files_and_format_fields_are_stopped_by_the_scan(world, submission, grade_it, config,
                                                                          all_cases, round_two_files):
    report = grade_contained(world, grade_it, submission(replace=round_two_files), config=config, cases=all_cases)
    expected = {"atomic": ("atomic__frame_walk.py", "yield me.gi_frame.f_back"),
                "cross_entropy": ("cross_entropy__shadow_ctypes.py", "import ctypes"),
                "batchnorm": ("batchnorm__format_fields.py", "field.format(dhpreact)")}
    for ex_id, (name, text) in expected.items():
        assert_attacked(report, ex_id, {"not_allowed"}, f"{EXERCISES[ex_id].file} line", "is not allowed")
        assert _line_of(name, text) in {f.line for f in report.integrity if f.exercise == ex_id}, ex_id
    assert ("cross_entropy", "ctypes.py") in {(f.exercise, f.file) for f in report.integrity}
    assert_full_marks(report, "embedding", "train")
    assert report.isolation.workers_started == 1  # only the untouched exercises ran


def test_no_frame_of_the_worker_holds_autograd_gradients(world, submission, grade_it, all_cases):
    report = grade_contained(world, grade_it, submission(replace=replaced("atomic__frame_walk.py")), cases=all_cases)
    assert "FOUND []" in report.output.stdout  # it walked every frame, and found no blob of dhpreact or demb
    atomic = report.exercise("atomic")
    assert atomic.score == 0
    assert {c.name: c.status for c in atomic.checks}["hpreact"] == "failed"
    assert_full_marks(report, "cross_entropy", "batchnorm", "embedding", "train")


def _builder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebook_builder", TESTS / "fixtures/notebooks/builder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell_line(source: str, text: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if text in line)


def test_notebook_kinds_get_the_same_check(world, grade_it, config, all_cases, tmp_path):
    """A tagged notebook's cell and a lecture notebook's cells (exercise 4's loop too): the same allow list."""
    import nbformat

    nb = nbformat.read(SOLUTIONS / "backprop_ninja.ipynb", as_version=4)
    atomic_cell = next(i for i, c in enumerate(nb.cells, 1) if "atomic" in c.metadata.get("tags", []))
    nb.cells[atomic_cell - 1].source = attack("atomic__frame_walk.py")
    tagged = tmp_path / "tagged.ipynb"
    tagged.write_text(nbformat.writes(nb))
    report = grade_contained(world, grade_it, tagged, config=config, cases=all_cases)
    assert_attacked(report, "atomic", {"not_allowed"}, "is not allowed")
    line = _line_of("atomic__frame_walk.py", "yield me.gi_frame.f_back")
    assert (f"cell {atomic_cell}", line) in {(f.file, f.line) for f in report.integrity}
    assert_full_marks(report, "cross_entropy", "batchnorm", "embedding", "train")

    nbb = _builder()
    loop_attack = (HOSTILE / "lecture" / "ex4_loop_alias.py").read_text()
    ex2 = (HOSTILE / "lecture" / "ex2_frame_walk.py").read_text()
    ex4 = nbb.EX4.replace("    emb = C[Xb]\n", "    emb = C[Xb]\n" + loop_attack, 1)
    cells = nbb.PREAMBLE + nbb.section_cells(ex2=[("code", nbb.EX2_FORWARD), ("code", ex2)], ex4=ex4) + nbb.POSTAMBLE
    path = nbb.write(nbb.lecture_notebook(cells=cells), tmp_path / "lecture.ipynb")
    sources = [c.source for c in nbformat.read(path, as_version=4).cells]
    ex2_cell = sources.index(ex2) + 1
    ex4_cell = next(i for i, s in enumerate(sources, 1) if "_ga = getattr" in s)
    report = grade_contained(world, grade_it, path, config=config, cases=all_cases)
    assert "LOOP REACHED" not in report.output.stdout and "FRAMES" not in report.output.stdout  # never ran
    found = {(f.exercise, f.file, f.line) for f in report.integrity}
    assert ("train", f"cell {ex4_cell}", _cell_line(sources[ex4_cell - 1], "_ga = getattr")) in found
    assert ("cross_entropy", f"cell {ex2_cell}", _cell_line(ex2, "yield _me.gi_frame.f_back")) in found
    assert_attacked(report, "train", {"not_allowed"}, "cell", "is not allowed")  # its prelude has ex2's too
    assert_attacked(report, "cross_entropy", {"not_allowed"}, f"cell {ex2_cell}, line", "is not allowed")
    assert_full_marks(report, "atomic", "batchnorm")


def test_an_exercise_child_keeps_only_its_own_inputs_and_zeroes_the_piped_rest():
    """harness.restrict (in the exercise's forked child): other exercises' tensors are out of reach, and those that
    came down a pipe (autograd's answers, hidden inputs: never in a file) leave no value behind."""
    import torch
    from safetensors.torch import save

    from grader.sandbox.inside import harness

    saved, piped = dict(harness.PRELOADED), set(harness.PIPED)
    try:
        harness.PRELOADED.clear()
        harness.PRELOADED["case-x.safetensors"] = {"bnraw": torch.ones(4, 3), "probs": torch.ones(4, 3)}  # a file's
        harness.add_inputs("case-x.safetensors", save({"dhpreact": torch.ones(4, 3)}))  # down the go pipe
        dhpreact = harness.PRELOADED["case-x.safetensors"]["dhpreact"]
        bnraw, probs = (harness.PRELOADED["case-x.safetensors"][k] for k in ("bnraw", "probs"))
        harness.restrict({"id": "atomic", "tensor_args": ["bnraw"], "int_args": ["n"]})
        assert harness.PRELOADED["case-x.safetensors"] == {"bnraw": bnraw}
        assert dhpreact.abs().sum() == 0  # autograd's dhpreact: gone and zeroed
        assert bnraw.sum() == 12 and probs.sum() == 12  # read from a file any child may read: dropped, not copied
    finally:
        harness.PRELOADED.clear()
        harness.PRELOADED.update(saved)
        harness.PIPED.clear()
        harness.PIPED.update(piped)
