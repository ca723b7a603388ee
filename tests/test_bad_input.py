"""Broken submissions cost only the checks they touch, each with a clear message.

Every grade starts a worker (a torch import), so each test bundles several
independent broken files, one per exercise.
"""

import shutil
import zipfile

import pytest

from conftest import ASSIGNMENTS, EXERCISE_IDS, MAX_SCORE, POINTS, SOLUTIONS, failing_checks
from grader.course.registry import EXERCISES

SYNTAX_ERROR = """
def backward_atomic(**fwd)
    return {}
"""

IMPORT_ERROR = """
import torch
import torch_utils_that_do_not_exist

def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    return dhpreact
"""

MISSING_FUNCTION = """
import torch

def cross_entropy_backwards(logits, Yb):  # misspelt
    return logits
"""

RETURNS_LIST = """
def embedding_backward(demb, Xb, vocab_size):
    return [[0.0] * demb.shape[2]] * vocab_size
"""

RAISES = """
import torch

def helper(x):
    raise ValueError("shapes do not line up")

def backward_fast(**fwd):
    return helper(fwd["logits"])
"""


def full_marks(report, *ex_ids):
    return all(report.exercise(e).score == report.exercise(e).max_score for e in ex_ids)


def test_solutions_full_marks_with_hidden_cases(submission, grade_it, all_cases):
    report = grade_it(submission(), cases=all_cases)
    assert report.score == report.max_score == MAX_SCORE
    assert report.hidden_cases == "included"
    assert all(e.status == "passed" for e in report.exercises)
    hidden = [c for e in report.exercises for ch in e.checks for c in ch.cases if c.visibility == "hidden"]
    assert hidden and all(c.max_abs_diff is None and c.expected_shape is None for c in hidden)


def test_stubs_score_zero_with_clear_messages(grade_it):
    report = grade_it(ASSIGNMENTS)
    assert report.score == 0
    for exercise in report.exercises:
        assert exercise.message == "not implemented yet: every answer is None", exercise.id
        for check in exercise.checks:
            assert check.score == 0
            assert all(c.status == "not_implemented" for c in check.cases), (exercise.id, check.name)
            assert "not implemented" in check.message
    assert not report.output.stderr.strip()


def test_broken_files_each_cost_only_their_exercise(submission, grade_it):
    sub = submission(replace={"atomic.py": SYNTAX_ERROR, "batchnorm.py": IMPORT_ERROR,
                              "cross_entropy.py": MISSING_FUNCTION, "embedding.py": RETURNS_LIST,
                              "train.py": RAISES})
    report = grade_it(sub)
    atomic = report.exercise("atomic")
    assert atomic.status == "error" and atomic.score == 0
    assert "SyntaxError" in atomic.message and "atomic.py" in atomic.message
    assert 'line 2' in atomic.traceback

    batchnorm = report.exercise("batchnorm")
    assert batchnorm.status == "error" and "ModuleNotFoundError" in batchnorm.message
    assert "torch_utils_that_do_not_exist" in batchnorm.traceback

    ce = report.exercise("cross_entropy")
    assert ce.status == "error"
    assert ce.message == "cross_entropy_backward is not defined in cross_entropy.py"

    emb = report.exercise("embedding")
    assert emb.score == 0
    assert all("got list, expected a plain torch.Tensor" in c.message for c in emb.checks[0].cases)

    train = report.exercise("train")
    assert train.score == 0
    case = train.checks[0].cases[0]
    assert case.status == "error" and "ValueError: shapes do not line up" in case.message
    assert "in helper" in train.traceback and "train.py" in train.traceback
    assert "harness.py" not in train.traceback and "session.py" not in train.traceback  # the student's frames only
    assert report.score == 0


def test_dict_problems_cost_only_their_keys(submission, grade_it):
    atomic = (SOLUTIONS / "atomic.py").read_text()
    atomic = atomic.replace("    return {", "    dbnvar = None\n    return {\"dlogits\": dlogits, ", 1)
    atomic = atomic.replace('"W1": dW1,', "").replace("'W1': dW1,", "")
    assert atomic != (SOLUTIONS / "atomic.py").read_text()
    train = "import torch\n\ndef backward_fast(**fwd):\n    return tuple(fwd.values())\n"
    report = grade_it(submission(replace={"atomic.py": atomic, "train.py": train}))
    assert failing_checks(report, "atomic") == {"bnvar", "W1"}
    checks = {c.name: c for c in report.exercise("atomic").checks}
    assert checks["bnvar"].cases[0].status == "not_implemented"
    assert checks["W1"].cases[0].status == "missing" and "'W1'" in checks["W1"].message
    assert report.exercise("atomic").score == pytest.approx(40 * 24 / 26, abs=1e-5)
    assert "expected a dict" in report.exercise("train").checks[0].message
    assert full_marks(report, "cross_entropy", "batchnorm", "embedding")


def test_timeout_kills_only_the_hung_exercise(submission, grade_it):
    loop = "def backward_atomic(**fwd):\n    while True:\n        pass\n"
    sub = submission(replace={"atomic.py": loop}, drop=("embedding.py",))
    report = grade_it(sub, timeout=3)
    atomic = report.exercise("atomic")
    assert atomic.status == "timeout" and atomic.score == 0
    assert "did not finish within 3 s" in atomic.message
    emb = report.exercise("embedding")
    assert emb.status == "not_submitted" and emb.message == "embedding.py was not submitted"
    assert full_marks(report, "cross_entropy", "batchnorm", "train")
    assert report.isolation.workers_started == 1  # the hung exercise ran in its own child, killed alone


def test_failure_on_some_cases_is_partial_credit(submission, grade_it):
    flaky = (SOLUTIONS / "cross_entropy.py").read_text().replace(
        "def cross_entropy_backward(logits, Yb):",
        "def cross_entropy_backward(logits, Yb):\n    if logits.shape[0] == 2:\n        raise RuntimeError('n=2')")
    report = grade_it(submission(replace={"cross_entropy.py": flaky}))
    check = report.exercise("cross_entropy").checks[0]
    assert check.passed_cases == 3 and check.total_cases == 4
    assert check.score == 15 * 3 / 4
    assert report.exercise("cross_entropy").status == "partial"
    assert "RuntimeError: n=2" in check.message


def test_zip_submission_with_a_top_folder(tmp_path, grade_it):
    archive = tmp_path / "work.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for src in SOLUTIONS.glob("*.py"):
            zf.write(src, f"my-backprop/{src.name}")
        zf.writestr("__MACOSX/my-backprop/._atomic.py", "junk")
        zf.writestr("../evil.py", "print('escaped')")
    report = grade_it(archive)
    assert report.submission.kind == "zip"
    assert sorted(report.submission.files) == sorted(ex.file for ex in EXERCISES.values())
    assert report.score == MAX_SCORE


def test_folder_with_only_some_files(tmp_path, grade_it):
    folder = tmp_path / "partial"
    folder.mkdir()
    shutil.copy(SOLUTIONS / "batchnorm.py", folder)
    report = grade_it(folder)
    assert report.exercise("batchnorm").score == POINTS["batchnorm"]
    assert report.score == POINTS["batchnorm"]
    assert {e.id for e in report.exercises if e.status == "not_submitted"} == set(EXERCISE_IDS) - {"batchnorm"}


def test_printing_warnings_and_no_grad_cost_nothing(submission, grade_it):
    """What learners do while debugging: print tensors, warn, wrap code in torch.no_grad()."""
    noisy = (SOLUTIONS / "cross_entropy.py").read_text().replace(
        "def cross_entropy_backward(logits, Yb):",
        "import warnings\n\n"
        "def cross_entropy_backward(logits, Yb):\n"
        "    print('logits', logits[:2], logits.shape)\n"
        "    warnings.warn('just checking')\n"
        "    with torch.no_grad():\n"
        "        print(F.softmax(logits, 1).sum(1)[:3])")
    report = grade_it(submission(replace={"cross_entropy.py": noisy}))
    assert report.score == MAX_SCORE
    assert report.integrity == []
    assert "logits tensor(" in report.output.stdout
    assert "just checking" in report.output.stderr


def test_keys_with_a_d_prefix_are_named(submission, grade_it):
    train = (SOLUTIONS / "train.py").read_text()
    renamed = train.replace('"W2": dW2', '"dW2": dW2')
    assert renamed != train
    report = grade_it(submission(replace={"train.py": renamed}))
    check = next(c for c in report.exercise("train").checks if c.name == "W2")
    assert check.score == 0
    assert "has 'dW2'" in check.cases[0].message and "use 'W2'" in check.cases[0].message
    assert failing_checks(report, "train") == {"W2", "trajectory"}
