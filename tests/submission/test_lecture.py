"""The lecture's own notebook: finding the exercises, what runs, and grading real-world variants.

The notebooks are built with tests/fixtures/notebooks/builder.py (the lecture's starter layout;
every section replaceable). Each variant of /work/shared/lecture-notebooks.md has a test here.
"""

import importlib.util
import textwrap
from pathlib import Path

import pytest

from grader.course.mlp import ATOMIC
from grader.scoring.lecture import has_lecture_case, lecture_cases
from grader.submission.cells import parse_cells
from grader.submission.lecture.headers import find_headers
from grader.submission.lecture.plan import build_plan
from grader.submission.lecture.policy import skip_reason
from conftest import TESTS

FIXTURES = TESTS / "fixtures" / "notebooks"
_spec = importlib.util.spec_from_file_location("notebook_builder", FIXTURES / "builder.py")
nbb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbb)


def cells_of(nb):
    return parse_cells(nb)


def plan_of(nb):
    return build_plan(cells_of(nb))


def grade_nb(grade_it, nb, tmp_path, name="lecture.ipynb", **kwargs):
    return grade_it(nbb.write(nb, tmp_path / name), **kwargs)


def passing(report, ex_id):
    return {c.name for c in report.exercise(ex_id).checks if c.status == "passed"}


def message(report, ex_id, name):
    check = next(c for c in report.exercise(ex_id).checks if c.name == name)
    return check.cases[0].message


def test_committed_examples_match_the_builder():
    for name, nb in nbb.examples().items():
        import nbformat
        assert (FIXTURES / name).read_text() == nbformat.writes(nb) + "\n", f"run python {FIXTURES / 'builder.py'}"


# ---------------------------------------------------------------------------
# Finding the exercises (no worker)

@pytest.mark.parametrize("source, number", [
    ("# Exercise 1: backprop through the whole thing manually,\n# more\ndx = 1", 1),
    ("#  Exercise 1", 1),                                    # two spaces
    ("    # Exercise 2\n    dlogits = 1\n", 2),                # the whole cell indented
    ("# Exercise 2", 2),                                      # shortened
    ("#Exercise 3: batchnorm", 3),
    ("# ------------\n# Exercise 1: manual\n# ------------\ndx = 1", 1),
    ("%%time\n# Exercise 1\ndx = 1", 1),
    ('"""\nExercise 1: backprop by hand\n"""\ndx = 1', 1),
    ("# utility for exercise 1\ndef cmp(): pass", None),
    ("x = 1  # Exercise 1", None),
])
def test_header_variants(source, number):
    nb = nbb.lecture_notebook(cells=[("code", source)])
    assert [n for _, n in find_headers(cells_of(nb))] == ([number] if number else [])


def test_markdown_headings_count_only_without_code_headers():
    nb = nbb.lecture_notebook(cells=[("markdown", "## Exercise 1: by hand"), ("code", "dx = 1"),
                                     ("markdown", "### Exercise 2"), ("code", "dlogits = 2")])
    plan = plan_of(nb)
    assert plan.exercise_cells() == {"atomic": [2], "cross_entropy": [4]}
    # With code headers, a markdown note about exercise 3 inside exercise 2 changes nothing.
    nb = nbb.lecture_notebook(cells=[("code", "# Exercise 2\ndlogits = 1"), ("markdown", "## Exercise 3 notes"),
                                     ("code", "dlogits = dlogits * 2"), ("code", "# Exercise 3\ndhprebn = 1")])
    assert plan_of(nb).exercise_cells() == {"cross_entropy": [1, 3], "batchnorm": [4]}


def test_sections_run_only_what_computes_gradients():
    plan = plan_of(nbb.lecture_notebook())
    assert plan.exercise_cells() == {"atomic": [11], "cross_entropy": [12, 13], "batchnorm": [14, 15], "train": [16]}
    # From the other cells only imports, function definitions and literal constants run
    # (not matplotlib, not cmp, not data loading: build_dataset reads `words`).
    prelude = [(e["cell"], e["run"]) for e in plan.prelude]
    assert prelude == [(2, [[1, 0], [2, 0]]),                 # import torch, import torch.nn.functional
                       (6, [[1, 0], [14, 0]]),                # block_size = 3, import random
                       (8, [[1, 0], [2, 0]]), (9, [[1, 0]])]  # n_embd = 10, n_hidden = 64, batch_size = 32
    # ... and of those, each exercise gets what its statements use.
    from grader.submission.lecture.plan import section_prelude
    assert [(e["cell"], e["run"]) for e in section_prelude(plan, plan.sections["cross_entropy"])] == [(2, [[2, 0]])]
    ex1 = plan.sections["atomic"]
    assert len(ex1.skipped) == 26 and all(s.reason.startswith("a cmp") for s in ex1.skipped)
    # The training cell of exercise 4 never runs.
    assert all(e["cell"] != 16 for s in plan.sections.values() for e in s.cells)


def test_an_unused_import_or_a_plotting_helper_of_another_cell_is_not_carried():
    from grader.submission.lecture.plan import scan_plan, section_prelude
    cells = nbb.PREAMBLE + [("code", "import os\ndef show(t):\n    plt.imshow(t)\nK = 27")] + nbb.section_cells()
    plan = plan_of(nbb.lecture_notebook(cells=cells))
    assert all(e["cell"] != 11 for e in section_prelude(plan, plan.sections["atomic"]))
    assert scan_plan(plan) == []


@pytest.mark.parametrize("source, reason", [
    ("plt.imshow(dlogits.detach(), cmap='gray')", "plotting"),
    ("import matplotlib.pyplot as plt", "plotting or notebook tooling"),
    ("words = open('names.txt').read().splitlines()", "data loading"),
    ("Xb, Yb = Xtr[ix], Ytr[ix]", "data loading"),
    ("for i in range(200000):\n    x = i", "a training or sampling loop"),
    ("for i in range(max_steps):\n    pass", "a training or sampling loop"),
    ("while True:\n    break", "a training or sampling loop"),
    ("with torch.no_grad():\n  for i in range(10):\n    loss.backward()", "autograd (.backward, .retain_grad, requires_grad)"),
    ("loss.backward()", "autograd (.backward, .retain_grad, requires_grad)"),
    ("for p in parameters:\n    p.grad = None", "autograd (.backward, .retain_grad, requires_grad)"),
    ("dhpreact = hpreact.grad", "reads autograd's gradient (.grad)"),
    ("print(cmp('h', dh, h))", "a cmp check (the grader compares itself)"),
    ("dlogits = F.softmax(logits, 1)", None),
    ("for k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n    dC[Xb[k,j]] += demb[k,j]", None),
    ("for i in range(32):\n    dC[Xb[i]] += demb[i]", None),
    ("dC.index_add_(0, Xb.view(-1), demb.view(-1, 10))", None),
    ("print(dlogits.shape)", None),
])
def test_skip_reasons(source, reason):
    import ast
    assert skip_reason(ast.parse(source).body[0]) == reason


@pytest.mark.parametrize("source, exercises_1_to_3, exercise_4_in_loop, exercise_4_before_loop", [
    # Exercise 4 trains on the grader's Xtr, Ytr: reading them is its work; assigning them is data loading.
    ("Xb, Yb = Xtr[ix], Ytr[ix]", "data loading", None, None),
    ("Xtr, Ytr = X[:n1], Y[:n1]", "data loading", None, "data loading (the grader provides Xtr and Ytr)"),
    # Other roads to autograd: exercises 1-3 run them (the static check reports them), exercise 4 leaves them out.
    ("J = torch.autograd.functional.jacobian(f, W1)", None, *["autograd (.backward, .grad, requires_grad)"] * 2),
    ("loss.backward()", "autograd (.backward, .retain_grad, requires_grad)",
     *["autograd (.backward, .grad, requires_grad)"] * 2),
    # Shared: plotting, tooling, data files, .grad reads.
    ("plt.show()", "plotting", "plotting", "plotting"),
    ("import tqdm", *["plotting or notebook tooling"] * 3),
    ("words = open('names.txt').read().splitlines()", *["data loading"] * 3),
    ("dW1 = W1.grad", *["reads autograd's gradient (.grad)"] * 3),
])
def test_one_policy_whose_difference_for_exercise_4_is_data(source, exercises_1_to_3, exercise_4_in_loop,
                                                            exercise_4_before_loop):
    import ast

    from grader.submission.lecture.train import _skip_reason
    node = ast.parse(source).body[0]
    assert skip_reason(node) == exercises_1_to_3
    assert _skip_reason(node, inside_loop=True) == exercise_4_in_loop
    assert _skip_reason(node, inside_loop=False) == exercise_4_before_loop


def test_a_cell_that_does_not_parse_costs_only_its_own_answers():
    ex1 = [("code", nbb.EX1_HEADER + "dlogprobs = torch.zeros_like(logprobs)"),
           ("code", "dprobs = (1.0 / probs) * dlogprobs)\n")]
    sec = plan_of(nbb.lecture_notebook(ex1=ex1)).sections["atomic"]
    assert sec.cell_numbers == [11, 12]
    assert sec.broken and sec.broken[0][0] == 12 and "does not parse" in sec.broken[0][1]
    from grader.scoring.lecture import missing_message
    assert "cell 12 does not parse" in missing_message("dprobs", sec, {})


def test_no_lecture_case_in_the_config(config, tmp_path):
    from grader.pipeline import grade
    from grader.submission.load import SubmissionError

    without = config.model_copy(update={"cases": config.cases[1:]})
    with pytest.raises(SubmissionError, match="no public case named 'lecture'"):
        grade(FIXTURES / "lecture_correct.ipynb", without)


def test_lecture_cases_and_config(config, public_cases, all_cases):
    assert [c.spec.name for c in lecture_cases(public_cases)] == ["lecture"]
    assert [c.spec.name for c in lecture_cases(all_cases)] == ["lecture", "hidden-1"]
    assert has_lecture_case(config)
    assert not has_lecture_case(config.model_copy(update={"cases": config.cases[1:]}))


@pytest.fixture
def extra_exercises(monkeypatch, config):
    """Two more exercises registered: one with no lecture section, one in a section (7) the lecture lacks."""
    from dataclasses import replace

    from grader.config import ExerciseConfig
    from grader.course.registry import EXERCISES
    from grader.course.spec import LectureSection, NotInLecture

    base = EXERCISES["cross_entropy"]
    plain = replace(base, id="extra_plain", file="extra_plain.py", title="An extra exercise", lecture=NotInLecture())
    sectioned = replace(base, id="extra_seven", file="extra_seven.py", title="Exercise 7",
                        lecture=LectureSection(7))
    for ex in (plain, sectioned):
        monkeypatch.setitem(EXERCISES, ex.id, ex)
    extra = {ex.id: ExerciseConfig(points=5) for ex in (plain, sectioned)}
    return config.model_copy(update={"exercises": {**config.exercises, **extra}})


def test_an_exercise_without_a_lecture_section_is_not_in_this_format(extra_exercises, public_cases):
    """Registered exercises the lecture's notebook does not hold: a clear report line each, never a KeyError."""
    from grader.feedback.engine import Diagnoser
    from grader.sandbox.outcome import RunOutcome
    from grader.scoring.lecture import score

    plan = plan_of(nbb.lecture_notebook())
    assert "extra_seven" not in plan.sections
    assert any("exercise 7 (no '# Exercise 7' header, and no cell defines its answers)" in n for n in plan.notes)
    results, _ = score(plan, ["extra_plain", "extra_seven"], extra_exercises, lecture_cases(public_cases),
                       RunOutcome(exercises={}), "lecture.ipynb", Diagnoser)
    plain, seven = results
    assert plain.status == "not_submitted" and plain.max_score == 0
    assert plain.message == ("not in this format: this exercise is not part of the lecture's notebook, "
                             "so it is not graded in this format")
    assert seven.score == 0 and seven.max_score == 5
    assert seven.message == "exercise 7 is not in the notebook (no '# Exercise 7' header, and no cell defines its answers)"


# ---------------------------------------------------------------------------
# Grading (each runs a worker)

def test_correct_notebook_karpathy_style_full_marks(grade_it):
    report = grade_it(FIXTURES / "lecture_correct.ipynb")
    assert report.notebook.format == "lecture"
    assert report.score == report.max_score == 90  # exercise 4 included: tests/test_lecture_train.py
    assert [e.id for e in report.exercises if e.max_score] == ["atomic", "cross_entropy", "batchnorm", "train"]
    assert report.exercise("embedding").message.startswith("not in this format")
    bnmeani = next(c for c in report.exercise("atomic").checks if c.name == "bnmeani")
    assert "keepdim" in bnmeani.cases[0].note                      # the lecture's (64,) passes with a note
    assert report.exercise("atomic").function == "cell 11"


def test_hidden_cases_of_the_lecture_shape_apply(grade_it, all_cases):
    report = grade_it(FIXTURES / "lecture_correct.ipynb", cases=all_cases)
    assert report.score == 90
    check = report.exercise("batchnorm").checks[0]
    assert [c.case for c in check.cases] == ["lecture", "hidden-1"]


def test_starter_notebook_scores_zero_with_clean_messages(grade_it):
    report = grade_it(FIXTURES / "lecture_starter.ipynb")
    assert report.score == 0
    assert report.exercise("atomic").message.startswith("not attempted")
    assert message(report, "atomic", "logprobs") == "dlogprobs is not defined by exercise 1's cells"
    assert message(report, "cross_entropy", "logits") == "dlogits is still None: not attempted yet"
    assert report.exercise("batchnorm").status == "failed"


def test_classic_mistakes_fail_exactly_the_wrong_gradients(grade_it):
    report = grade_it(FIXTURES / "lecture_mistakes.ipynb")  # it also carries stale "exact: True" outputs
    assert passing(report, "atomic") == set(ATOMIC) - {"C", "b2"}
    assert "wrong shape" in message(report, "atomic", "b2")
    assert "wrong values" in message(report, "atomic", "C")   # dC[Xb] += demb does not accumulate
    assert passing(report, "cross_entropy") == set()          # forgot the 1/n
    assert passing(report, "batchnorm") == set()              # dropped Bessel's n/(n-1)


def test_layout_variants_all_pass(grade_it, tmp_path):
    """Empty header cell, indented cell, IPython syntax, merged forward/backward cells, markdown header,
    hard-coded sizes and lecture globals, keepdim differences, no dlogit_maxes at all, and a fresh
    namespace per exercise (exercise 2 spoils `bnraw`; exercise 3 must not see it)."""
    ex1 = [
        ("code", "#  Exercise 1: backprop through the whole thing manually\n# (work below)\n"
                 "# cmp('logprobs', dlogprobs, logprobs)"),
        ("code", "  dlogprobs = torch.zeros((32, 27))\n  dlogprobs[torch.arange(32), Yb] = -1/32\n"
                 "  dprobs = dlogprobs / probs\n  !nvidia-smi\n"
                 "  dcounts_sum_inv = (counts * dprobs).sum(1, keepdims=True)\n"),
        ("code", "%%time\ndcounts = counts_sum_inv * dprobs\ndcounts_sum = -counts_sum**-2 * dcounts_sum_inv\n"
                 "dcounts += dcounts_sum\ndnorm_logits = counts * dcounts\n"
                 "dlogits = dnorm_logits.clone()   # the max branch is zero: left out\n"
                 "dh = dlogits @ W2.T\ndW2 = h.T @ dlogits\ndb2 = dlogits.sum(0, keepdim=True)\n"
                 "dhpreact = (1 - h**2) * dh\ndbngain = (bnraw * dhpreact).sum(0)\ndbnbias = dhpreact.sum(0)\n"
                 "dbnraw = bngain * dhpreact\ndbnvar_inv = (bndiff * dbnraw).sum(0)\n"
                 "dbnvar = -0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv\n"
                 "dbndiff2 = torch.ones_like(bndiff2) / (batch_size - 1) * dbnvar\n"
                 "dbndiff = bnvar_inv * dbnraw + 2 * bndiff * dbndiff2\n"
                 "dbnmeani = -dbndiff.sum(0, keepdim=True)\ndhprebn = dbndiff + dbnmeani / n\n"
                 "dembcat = dhprebn @ W1.T\ndW1 = embcat.T @ dhprebn\ndb1 = dhprebn.sum(0, keepdim=True)\n"
                 "demb = dembcat.view(batch_size, block_size, n_embd)\n"
                 "dC = F.one_hot(Xb.view(-1), vocab_size).float().T @ demb.view(-1, 10)\n"
                 "assert len(parameters) == 7 and g is not None\n"),
    ]
    ex2 = [("code", "# Exercise 2\nloss_fast = F.cross_entropy(logits, Yb)\n"
                    "dlogits = (F.softmax(logits, 1) - F.one_hot(Yb, 27)) / 32\n"
                    "bnraw = torch.zeros_like(bnraw)  # spoils bnraw, in this exercise only\n")]
    ex3 = [("markdown", "### Exercise 3: backprop through batchnorm but all in one go"),
           ("code", "hpreact_fast = bngain * (hprebn - hprebn.mean(0, keepdim=True)) / torch.sqrt("
                    "hprebn.var(0, keepdim=True, unbiased=True) + 1e-5) + bnbias\n"
                    "dhprebn = bngain*bnvar_inv/32 * (32*dhpreact - dhpreact.sum(0) - "
                    "32/31*bnraw*(dhpreact*bnraw).sum(0))\n")]
    report = grade_nb(grade_it, nbb.lecture_notebook(ex1=ex1, ex2=ex2, ex3=ex3), tmp_path)
    assert report.score == 90, [(c.name, c.message) for e in report.exercises for c in e.checks if c.message]
    checks = {c.name: c for c in report.exercise("atomic").checks}
    assert "exactly zero" in checks["logit_maxes"].cases[0].note
    assert "keepdim" in checks["b2"].cases[0].note and "keepdim" in checks["bngain"].cases[0].note
    assert report.notebook.exercise_cells["atomic"] == [11, 12, 13]


def test_trouble_variants(grade_it, tmp_path):
    """Name drift, `dX = None # TODO`, autograd's `.grad`, a statement that raises, one that never ends."""
    ex1 = [("code", nbb.EX1_HEADER + nbb.EX1_SOLUTION
            .replace("dlogit_maxes", "dlogits_maxes")
            .replace("db2 = dlogits.sum(0)", "db2 = None # TODO")
            .replace("dhpreact = (1.0 - h**2) * dh", "print(loss_fast)\ndhpreact = hpreact.grad"))]
    ex2 = [("code", nbb.EX2_FORWARD),
           ("code", "# backward pass\n" + nbb.EX2_SOLUTION + "i = 0\nwhile i >= 0:\n    i += 1\n"
                    "print((dlogits - logits.grad).abs().max())  # comparing with autograd is fine\n")]
    # In exercise 3 dhpreact is the given input: reading it from autograd there is harmless.
    ex3 = [("code", nbb.EX3_FORWARD), ("code", "dhpreact = hpreact.grad\n" + nbb.EX3_SOLUTION)]
    report = grade_nb(grade_it, nbb.lecture_notebook(ex1=ex1, ex2=ex2, ex3=ex3), tmp_path, timeout=4)
    atomic = report.exercise("atomic")
    assert passing(report, "atomic") == {"logprobs", "probs", "counts_sum_inv", "counts_sum", "counts",
                                         "norm_logits", "logit_maxes", "logits", "h", "W2"}
    # A near-miss name, unambiguous: accepted, with a note saying so.
    logit_maxes = next(c for c in atomic.checks if c.name == "logit_maxes").cases[0]
    assert logit_maxes.note == ("read from dlogits_maxes, taken for dlogit_maxes "
                                "(the name is close and nothing else matches)")
    assert message(report, "atomic", "b2") == "db2 is still None: not attempted yet"
    hpreact = next(c for c in atomic.checks if c.name == "hpreact").cases[0]
    assert hpreact.status == "not_allowed" and "reads autograd's gradient (hpreact.grad" in hpreact.message
    assert atomic.message.startswith("uses autograd's gradient (hpreact.grad, cell 11")
    assert message(report, "atomic", "bngain") == (
        "dbngain is computed from autograd's gradient (hpreact.grad, cell 11, line 19), not by hand, "
        "so it was not graded as your work")
    assert [(f.pattern, f.exercise) for f in report.integrity if f.pattern == ".grad"] == [(".grad", "atomic")]
    assert any("the grader supplies the true dhpreact" in note for note in report.notebook.notes)
    assert any("did not finish" in note or "no result within" in note for note in report.notebook.notes)
    # The endless loop comes after dlogits: it costs nothing.
    assert report.exercise("cross_entropy").score == 15
    assert report.exercise("batchnorm").score == 15


def test_missing_exercise_2_and_a_cmp_only_exercise_3(grade_it, tmp_path):
    """Exercise 3's cell holds only the cmp line: exercise 1's dhprebn must not count there."""
    ex3 = [("code", nbb.EX3_FORWARD), ("code", "cmp('hprebn', dhprebn, hprebn)")]
    report = grade_nb(grade_it, nbb.lecture_notebook(ex2=[], ex3=ex3), tmp_path)
    assert report.exercise("atomic").score == 40
    assert report.exercise("cross_entropy").message == (
        "exercise 2 is not in the notebook (no '# Exercise 2' header, and no cell computes dlogits in one go "
        "from logits)")
    assert report.exercise("cross_entropy").score == 0
    assert message(report, "batchnorm", "hprebn").startswith("dhprebn is not defined by exercise 3's cells "
                                                              "(each exercise runs on its own")


def test_missing_exercise_3(grade_it, tmp_path):
    report = grade_nb(grade_it, nbb.lecture_notebook(ex3=[]), tmp_path)
    assert report.score == 75
    assert report.exercise("batchnorm").status == "not_submitted"
    assert ("not found in the notebook: exercise 3 (no '# Exercise 3' header, and no cell computes dhprebn "
            "in one go from dhpreact)") in report.notebook.notes


def test_extra_cells_and_reordered_markdown(grade_it, tmp_path):
    """Exploring, plotting, re-running the forward pass with autograd, loading data, a no_grad block:
    none of it matters."""
    forward = nbb.PREAMBLE[-1][1]
    ex1 = [("markdown", "Let's go backwards, one line at a time."),
           ("code", nbb.EX1_HEADER + "# see below"),
           ("code", forward),                                   # the forward pass again, with loss.backward()
           ("code", "words = open('names.txt', 'r').read().splitlines()"),
           ("code", "with torch.no_grad():\n" + textwrap.indent(nbb.EX1_SOLUTION, "    ")
                    + "    print((dC - C.grad).abs().max())   # a .grad check inside the block\n"),
           ("markdown", "## Exercise 3 notes: remember Bessel"),  # a note placed early
           ("code", "print(hpreact.grad)\nplt.hist(dh.view(-1).tolist(), 50);"),
           ("code", nbb.EX1_CMPS)]
    ex2 = [("code", nbb.EX2_FORWARD), ("code", "logits.shape, Yb.shape"), ("code", "F.softmax(logits, 1)[0]"),
           ("code", "# backward pass\n" + nbb.EX2_SOLUTION), ("code", "dlogits[0].sum()"),
           ("code", "plt.figure(figsize=(4, 4))\nplt.imshow(dlogits.detach(), cmap='gray')"),
           ("markdown", "Each row of dlogits sums to zero.")]
    ex3 = [("code", nbb.EX3_FORWARD), ("markdown", "Now the backward pass:"),
           ("code", "# backward pass\n" + nbb.EX3_SOLUTION),
           ("code", "dhprebn.shape, bngain.shape, bnvar_inv.shape, dbnraw.shape")]   # dbnraw is exercise 1's
    report = grade_nb(grade_it, nbb.lecture_notebook(ex1=ex1, ex2=ex2, ex3=ex3), tmp_path)
    assert report.score == 90, [(c.name, c.message) for e in report.exercises for c in e.checks if c.message]
    assert not [f for f in report.integrity if f.pattern == ".grad"]   # printing .grad is not using it
    assert any("plotting" in note for note in report.notebook.notes)


# ---------------------------------------------------------------------------
# The patterns of lecture-notebooks.md, one notebook each (tests/fixtures/notebooks/patterns/, built by
# builder.patterns()). Each is graded once, through one pre-warmed fork server.

PATTERNS = FIXTURES / "patterns"
GRADED_IDS = {1: "atomic", 2: "cross_entropy", 3: "batchnorm"}


def test_committed_patterns_match_the_builder():
    import nbformat
    built = nbb.patterns()
    assert sorted(built) == sorted(p.name for p in PATTERNS.glob("*.ipynb"))
    for name, nb in built.items():
        assert (PATTERNS / name).read_text() == nbformat.writes(nb) + "\n", f"run python {FIXTURES / 'builder.py'}"


@pytest.fixture(scope="module")
def pattern_reports(config, public_cases, tmp_path_factory):
    from grader.pipeline import grade
    from grader.sandbox.levels import choose_level
    from grader.sandbox.slot import Slot

    slot = Slot(tmp_path_factory.mktemp("slot"), choose_level(config.isolation), config)
    try:
        return {path.name: grade(path, config, cases=public_cases, slot=slot) for path in sorted(PATTERNS.glob("*.ipynb"))}
    finally:
        slot.close()


def _meta(name):
    import json
    return json.loads((PATTERNS / name).read_text())["metadata"]["grader_test"]


@pytest.mark.parametrize("name", sorted(p.name for p in PATTERNS.glob("*.ipynb")))
def test_each_pattern_finds_the_work_and_grades_it_right(pattern_reports, name):
    """Every gradient's verdict agrees with what the notebook's own cmp lines say, and the notes say
    what the grader assumed."""
    report, meta = pattern_reports[name], _meta(name)
    assert report.notebook.format == "lecture"
    verdicts = {f"{GRADED_IDS[n]}.{c.name}": c.status == "passed" for n in meta["exercises"]
                for c in report.exercise(GRADED_IDS[n]).checks}
    assert len(verdicts) == 26 * (1 in meta["exercises"]) + (2 in meta["exercises"]) + (3 in meta["exercises"])
    assert {k for k, ok in verdicts.items() if not ok} == set(meta["expected_failing"])
    for text in meta["expect"]:
        assert any(text in note for note in report.notebook.notes), (text, report.notebook.notes)
    assert not [n for n in report.notebook.notes if "does not parse" in n]


def test_no_headers_exercise_4_stays_out(pattern_reports):
    plan = plan_of(nbb.patterns()["no_headers.ipynb"])
    assert plan.exercise_cells() == {"atomic": [11], "cross_entropy": [13], "batchnorm": [15], "train": [16]}
    assert plan.training_cells == [16]                # never part of exercises 1-3; graded as `train`
    assert pattern_reports["no_headers.ipynb"].score == 90   # exercises 1-4


def test_work_before_an_empty_header_and_a_hundred_cells():
    plan = plan_of(nbb.patterns()["header_after_work.ipynb"])
    assert plan.exercise_cells()["atomic"] == list(range(11, 44))   # 32 one-gradient cells, then the header
    plan = plan_of(nbb.patterns()["hundred_cells.ipynb"])
    assert len(plan.exercise_cells()["atomic"]) == 65                # code cells of exercise 1, none lost


def test_custom_titles_and_merged_cells_are_found_by_their_code():
    plan = plan_of(nbb.patterns()["custom_titles_merged.ipynb"])
    assert plan.exercise_cells() == {"atomic": [11], "cross_entropy": [12], "batchnorm": [14]}
    assert plan.headers == []


def test_a_one_go_cell_under_exercise_1s_header_moves_to_its_exercise():
    cells = nbb.PREAMBLE + [("code", nbb.EX1_HEADER + nbb.EX1_SOLUTION),
                            ("code", "# now the fast way\n" + nbb.EX2_SOLUTION),
                            ("code", "# and batchnorm\n" + nbb.EX3_SOLUTION)]
    plan = plan_of(nbb.lecture_notebook(cells=cells))
    assert plan.exercise_cells() == {"atomic": [11], "cross_entropy": [12], "batchnorm": [13]}


@pytest.mark.parametrize("source, number", [
    ("# Excercise 2: cross entropy", 2), ("# excercie 3", 3), ("# exercise 2", 2), ("#  Exercise 1", 1),
    ("# EXERCISE 3:", 3), ("# Example 1: a detour", None), ("# execute 2 cells", None)])
def test_misspelled_and_lower_case_headers(source, number):
    nb = nbb.lecture_notebook(cells=[("code", source)])
    assert [n for _, n in find_headers(cells_of(nb))] == ([number] if number else [])


@pytest.mark.parametrize("source, number", [
    ("* Exercise 1: backprop", 1), ("- Excercise 2", 2), ("## Exercise 2", 2), ("### Exercise 1:", 1),
    ("**Exercise 3**", 3), ("Some notes on exercise 2", None)])
def test_markdown_bullets_and_headings(source, number):
    nb = nbb.lecture_notebook(cells=[("markdown", source)])
    assert [n for _, n in find_headers(cells_of(nb))] == ([number] if number else [])


def test_a_notebook_with_no_exercises_at_all_is_refused(tmp_path):
    from grader.submission.cells import NotebookError
    from grader.submission.notebook import extract
    nb = nbb.lecture_notebook(cells=nbb.PREAMBLE + nbb.POSTAMBLE)
    with pytest.raises(NotebookError, match="no exercises found"):
        extract(nb, "empty.ipynb", b"")
    # One exercise's work, no header: a lecture notebook, with a report saying what is missing.
    nb = nbb.patterns()["only_exercise_2.ipynb"]
    files, info = extract(nb, "one.ipynb", b"")
    assert info.format == "lecture" and info.exercise_cells == {"cross_entropy": [12]}


def test_indented_cell_runs_like_ipython_8(pattern_reports):
    from grader.submission.cells import sanitize
    text, _ = sanitize("    # Exercise 1\n# a comment at column 0\n    dx = 1\n    if dx:\n        dy = 2\n")
    assert text.splitlines() == ["# Exercise 1", "# a comment at column 0", "dx = 1", "if dx:", "    dy = 2"]
    assert pattern_reports["ipython_indented.ipynb"].exercise("atomic").score == 40


def test_constants_helpers_and_the_students_own_cmp(pattern_reports):
    plan = plan_of(nbb.patterns()["constants_helpers.ipynb"])
    prelude = {name for entry in plan.prelude for name in entry["names"]}
    assert {"BATCH_SIZE", "EMBEDDING_DIMENSIONALITY", "VOCAB", "one_hot_rows"} <= prelude
    assert "check" not in prelude                    # a helper that compares with .grad: not carried, not run
    assert any(s.reason.startswith("a cmp") for s in plan.sections["atomic"].skipped if s.line == 39)
    report = pattern_reports["constants_helpers.ipynb"]
    assert report.score == 90 and not report.integrity


def test_student_names_are_read_with_notes(pattern_reports):
    report = pattern_reports["student_names.ipynb"]
    notes = {c.name: c.cases[0].note for e in ("atomic", "cross_entropy", "batchnorm")
             for c in report.exercise(e).checks}
    assert notes["logprobs"] == "read from dL_dlp: your cmp line compares it with logprobs"
    assert notes["logit_maxes"] == "read from dlogits_maxes: your cmp line compares it with logit_maxes"
    assert notes["hprebn"].startswith("read from dhprebn_fast") or notes["hprebn"].startswith("read from dbhprebn")
    assert report.exercise("atomic").checks[20].cases[0].note == (
        "read from dbhprebn: your cmp line compares it with hprebn")   # from the commented-out cmp line
    assert report.exercise("cross_entropy").checks[0].cases[0].note == (
        "read from dlogits_fast, taken for dlogits (the name is close and nothing else matches)")


def test_an_ambiguous_near_miss_is_not_guessed():
    from grader.sandbox.inside.statements import answer_candidates
    assert answer_candidates("dlogits", ["dlogits_fast", "dlogits_v2"], {"dlogits"}) == ["dlogits_fast", "dlogits_v2"]
    assert answer_candidates("dbnvar", ["dbnvar_inv"], {"dbnvar", "dbnvar_inv"}) == []   # another answer


def test_renamed_forward_tensors(pattern_reports):
    plan = plan_of(nbb.patterns()["renamed_forward.ipynb"])
    ex1 = plan.sections["atomic"]
    assert ex1.forward_aliases["Y_batch"] == "Yb" and ex1.forward_aliases["h_pre_act"] == "hpreact"
    assert ex1.aliases["hpreact"] == ["dh_pre_act"]
    assert pattern_reports["renamed_forward.ipynb"].score == 90


def test_names_only_the_students_forward_cell_explains(pattern_reports):
    plan = plan_of(nbb.patterns()["renamed_by_running.ipynb"])
    cell = plan.sections["atomic"].forward_cell
    assert (cell["cell"], cell["wanted"]) == (10, ["hidden", "out", "pre_bn"])
    assert all(e["cell"] != 10 for e in plan.sections["atomic"].cells)     # it is not exercise 1's work
    assert pattern_reports["renamed_by_running.ipynb"].score == 90


def test_messages_name_the_real_cause(pattern_reports):
    report = pattern_reports["named_causes.ipynb"]
    # The -1 line raised a NameError: that is the message, with no misconception hint.
    logits = report.exercise("cross_entropy").checks[0]
    assert logits.cases[0].message == logits.message == (
        "dlogits is not finished: cell 13, line 2 raised NameError: name 'targets_b' is not defined, "
        "so that line's change to dlogits never happened")
    assert logits.hint is None and logits.cases[0].hint is None
    # The final value of dhpreact is autograd's, though a line before computed it by hand.
    checks = {c.name: c for c in report.exercise("atomic").checks}
    assert checks["hpreact"].cases[0].status == "not_allowed"
    assert "reads autograd's gradient (hpreact.grad, cell 11, line 19)" in checks["hpreact"].cases[0].message
    assert checks["bngain"].cases[0].status == "not_allowed"        # what it feeds is charged
    assert [f.line for f in report.integrity if f.pattern == ".grad"] == [19]
    # Not "a value from another exercise's cells": dlogits is assigned only in exercise 2.
    assert "another exercise" not in logits.message


def test_another_exercises_value_is_said_only_when_true():
    from grader.scoring.lecture import missing_message
    ex3 = [("code", nbb.EX3_FORWARD), ("code", "cmp('hprebn', dhprebn, hprebn)")]
    plan = plan_of(nbb.lecture_notebook(ex3=ex3))
    assert "another exercise's cells" in missing_message("dhprebn", plan.sections["batchnorm"], {})
    plan = plan_of(nbb.lecture_notebook(ex1=nbb.STARTER_EX1, ex3=ex3))
    assert "another exercise" not in missing_message("dhprebn", plan.sections["batchnorm"], {})


def test_aten_backward_kernel_in_a_cell_costs_that_exercise(pattern_reports):
    report = pattern_reports["aten_kernel.ipynb"]
    ex3 = report.exercise("batchnorm")
    assert ex3.status == "not_allowed" and ex3.score == 0
    finding = next(f for f in report.integrity if f.exercise == "batchnorm")
    assert (finding.file, finding.line) == ("cell 15", 1)
    assert "native_batch_norm_backward" in finding.pattern or "torch.ops" in finding.pattern
    assert finding.message.startswith("cell 15, line 1:")
    assert report.exercise("cross_entropy").score == 15
    # A dbndiff2 of shape (1, 64) for (32, 64) fails, though cmp's broadcasting would pass it.
    assert passing(report, "atomic") == set(ATOMIC) - {"bndiff2"}
    assert "wrong shape" in message(report, "atomic", "bndiff2")


def test_the_scan_sees_only_what_runs_and_maps_lines_back():
    from grader.submission.lecture.plan import scan_plan
    assert scan_plan(plan_of(nbb.lecture_notebook())) == []   # loss.backward() and cmp never run
    ex2 = [("code", nbb.EX2_FORWARD),
           ("code", "with torch.no_grad():\n    x = 1\n    dlogits = torch.autograd.functional.jacobian(\n"
                    "        lambda l: l, logits)")]
    findings = scan_plan(plan_of(nbb.lecture_notebook(ex2=ex2)))
    assert {(f.exercise, f.file, f.line) for f in findings} == {("cross_entropy", "cell 13", 3)}


def test_gradients_under_exercise_4s_header_stay_there():
    """A one-step check of exercise 4's backward pass, outside its loop, is not exercise 1's work."""
    cells = nbb.PREAMBLE + nbb.section_cells(ex4=False) + [
        ("code", "# Exercise 4: putting it all together\n" + nbb.EX2_SOLUTION + "dh = dlogits @ W2.T * 0")]
    plan = plan_of(nbb.lecture_notebook(cells=cells))
    assert plan.exercise_cells() == {"atomic": [11], "cross_entropy": [12, 13], "batchnorm": [14, 15]}


def test_an_unheaded_cell_that_does_not_parse_is_still_found_and_its_error_named():
    from grader.scoring.lecture import missing_message
    cells = nbb.PREAMBLE + [("code", "dlogprobs = torch.zeros_like(logprobs)\ndprobs = (1.0 / probs) * dlogprobs)")]
    plan = plan_of(nbb.lecture_notebook(cells=cells))
    sec = plan.sections["atomic"]
    assert sec.cell_numbers == [11] and "cell 11 does not parse" in missing_message("dprobs", sec, {})
