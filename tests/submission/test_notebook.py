"""Grading a notebook: the tagged (release) layout and plain notebooks that define the functions."""

import json
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

from grader.submission.cells import parse_notebook_bytes, sanitize
from grader.submission.notebook import extract
from grader.submission.load import SubmissionError, load_submission
from conftest import MAX_SCORE, ROOT

SOLVED = ROOT / "solutions" / "backprop_ninja.ipynb"
STUDENT = ROOT / "assignments" / "backprop_ninja.ipynb"


def solved():
    return nbformat.read(SOLVED, as_version=4)


def cell(nb, cell_id):
    return next(c for c in nb.cells if c.id == cell_id)


def save(nb, path: Path) -> Path:
    path.write_text(nbformat.writes(nb))
    return path


def files_of(nb, name="work.ipynb"):
    data = nbformat.writes(nb).encode()
    return extract(parse_notebook_bytes(data, name), name, data)


# ---------------------------------------------------------------------------
# Reading, without running anything

def test_an_old_v3_notebook_is_converted_by_nbformat_and_graded_the_same():
    """v4 notebooks are read as plain JSON; a v3 one (cells inside `worksheets`, code in `input`) still goes
    through nbformat's conversion, imported only for it."""
    source = (ROOT / "solutions" / "cross_entropy.py").read_text()
    old = {"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "old"}, "worksheets": [{"metadata": {}, "cells": [
        {"cell_type": "markdown", "source": "# my old notebook", "metadata": {}},
        {"cell_type": "code", "input": source, "language": "python", "outputs": [], "metadata": {},
         "collapsed": False}]}]}
    data = json.dumps(old).encode()
    files, info = extract(parse_notebook_bytes(data, "old.ipynb"), "old.ipynb", data)
    assert list(files) == ["cross_entropy.py"] and info.format == "functions"
    assert "def cross_entropy_backward" in files["cross_entropy.py"]


def test_sanitize_turns_ipython_syntax_into_pass():
    text, changed = sanitize("%matplotlib inline\n!wget http://x/names.txt\nfiles = !ls\nimport torch\ntorch.zeros?\n"
                             "for i in range(2):\n    %time x = 1\nx = (1\n  != 2)\n")
    lines = text.splitlines()
    assert changed == [1, 2, 3, 5, 7]
    assert lines[0] == "pass  # IPython: %matplotlib inline"
    assert lines[6] == "    pass  # IPython: %time x = 1"
    assert lines[7:] == ["x = (1", "  != 2)"]
    compile(text, "<cell>", "exec")


def test_sanitize_cell_magics_and_indented_cells():
    text, _ = sanitize("%%time\nx = 1\n")
    assert text.splitlines() == ["pass  # IPython: %%time", "x = 1"]
    text, _ = sanitize("%%bash\necho hi\n")
    assert all(line.startswith("#") for line in text.splitlines())
    text, _ = sanitize("    # Exercise 1\n    dx = 1\n    if dx:\n        dy = 2\n")
    assert text.splitlines()[1] == "dx = 1"
    compile(text, "<cell>", "exec")


@pytest.mark.parametrize("source, lines, changed", [
    # IPython's own transformer decides what is IPython syntax: not a `!` or `?` inside a string or a comparison.
    ('x = "!not a command"\ny = 1 != 2\nz = a?b if 0 else 1  # (not valid Python: left to the parser)',
     ['x = "!not a command"', "y = 1 != 2", "z = a?b if 0 else 1  # (not valid Python: left to the parser)"], []),
    ("names = %who_ls\ntorch.zeros??\n", ["pass  # IPython: names = %who_ls", "pass  # IPython: torch.zeros??"],
     [1, 2]),
    # IPython 8's rule: the first line's indentation comes off every line that has it; a comment at column 0 stays.
    ("    dx = 1\n# note\n    if dx:\n        dy = 2\n", ["dx = 1", "# note", "if dx:", "    dy = 2"], []),
    # A shell line continued with a backslash: both lines neutralised, the rest untouched.
    ("!pip install \\\n    torch\nx = 1\n", ["pass  # IPython: !pip install \\", "# IPython: torch", "x = 1"], [1, 2]),
    # Leading empty lines are kept, so line numbers are the student's.
    ("\n\n%time y = 2\n", ["", "", "pass  # IPython: %time y = 2"], [3]),
])
def test_sanitize_follows_ipython(source, lines, changed):
    text, got = sanitize(source)
    assert text.splitlines() == lines and got == changed


def test_tagged_notebook_gives_the_contract_files():
    files, info = files_of(solved())
    assert info.format == "tagged" and sorted(files) == sorted(
        ["atomic.py", "cross_entropy.py", "batchnorm.py", "embedding.py", "train.py"])
    atomic = files["atomic.py"]
    assert "import torch.nn.functional as F" in atomic and "def backward_atomic(" in atomic
    assert "make_case" not in atomic and "backward()" not in atomic  # the check helpers stay out
    compile(atomic, "atomic.py", "exec")
    origin = info.origins["atomic.py"]
    assert origin.cells == [6]
    line = atomic.splitlines().index("def backward_atomic(") + 1
    assert origin.locate(line) == (6, 1)


def test_plain_notebook_functions_and_what_they_need(tmp_path):
    nb = solved()
    for c in nb.cells:
        c.metadata.pop("tags", None)
    # Helpers and constants from other cells come along; top-level test code does not.
    nb.cells.insert(1, v4.new_code_cell("%matplotlib inline\nimport math\nSCALE = 1.0\nnames = open('x').read()\n"
                                        "def helper(x):\n    return x * SCALE\n"))
    ce = cell(nb, "cross_entropy")
    ce.source = ce.source.replace("dlogits /= n", "dlogits = helper(dlogits) / n") + \
        "\n\nprint(cross_entropy_backward(torch.zeros(2, 3), torch.tensor([0, 1])))\n"
    nb.cells.append(v4.new_code_cell("def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):\n"
                                     "    return dhpreact * len(names)\n"))
    files, info = files_of(nb)
    assert info.format == "functions"
    ce_file = files["cross_entropy.py"]
    assert "def helper(x):" in ce_file and "SCALE = 1.0" in ce_file
    assert "print(" not in ce_file and "open(" not in ce_file and "%matplotlib" not in ce_file
    assert any("code outside the functions" in n for n in info.notes)
    # The last definition wins (top to bottom), and what it cannot get is said.
    assert "len(names)" in files["batchnorm.py"]
    assert any("names, computed in another cell" in n for n in info.notes)
    assert info.exercise_cells["batchnorm"] == [len(nb.cells)]


def test_outputs_are_ignored_and_bad_files_are_refused(tmp_path):
    nb = solved()
    code = cell(nb, "atomic-check")
    code.outputs = [v4.new_output("stream", name="stdout", text="logprobs | exact: True\n" * 5000)]
    _, info = files_of(nb)
    assert info.format == "tagged"
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(SubmissionError, match="not valid JSON"):
        load_submission(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(SubmissionError, match="not a Jupyter notebook"):
        load_submission(bad)
    empty = save(v4.new_notebook(cells=[v4.new_code_cell("x = 1")]), tmp_path / "empty.ipynb")
    with pytest.raises(SubmissionError, match="no exercises found"):
        load_submission(empty)


def test_a_cell_that_does_not_parse_is_graded_as_is():
    nb = solved()
    bn = cell(nb, "batchnorm")
    bn.source = bn.source.replace("n = dhpreact.shape[0]", "n = = dhpreact.shape[0]")
    files, info = files_of(nb)
    assert "n = = dhpreact" in files["batchnorm.py"]
    assert any("does not parse" in n for n in info.notes)


# ---------------------------------------------------------------------------
# Grading, in the worker

def test_solved_notebook_full_marks(grade_it):
    report = grade_it(SOLVED)
    assert report.score == report.max_score == MAX_SCORE
    assert report.submission.kind == "notebook"
    assert report.notebook.format == "tagged"
    assert report.notebook.exercise_cells["atomic"] == [6]
    assert report.exercise("atomic").file == "cell 6"


def test_student_notebook_zero_with_clean_messages(grade_it):
    report = grade_it(STUDENT)
    assert report.score == 0
    for ex in report.exercises:
        assert ex.message == "not implemented yet: every answer is None", ex.message
        assert ex.traceback is None


def test_plain_notebook_with_one_wrong_exercise(grade_it, tmp_path):
    nb = solved()
    for c in nb.cells:
        c.metadata.pop("tags", None)
    bn = cell(nb, "batchnorm")
    bn.source = bn.source.replace("n / (n - 1) * ", "")           # forgets Bessel's correction
    bn.source = "%load_ext autoreload\n!echo hi\n" + bn.source    # IPython syntax must not break anything
    stale = cell(nb, "batchnorm-check")
    stale.outputs = [v4.new_output("stream", name="stdout", text="hprebn | exact: True | approximate: True\n")]
    report = grade_it(save(nb, tmp_path / "work.ipynb"))
    assert report.notebook.format == "functions"
    scores = {ex.id: (ex.score, ex.max_score) for ex in report.exercises}
    assert scores["batchnorm"] == (0, 15)
    assert all(s == m for ex, (s, m) in scores.items() if ex != "batchnorm")


def test_cells_that_raise_loop_or_print_to_stderr(grade_it, tmp_path):
    nb = solved()
    at = cell(nb, "atomic")
    at.source = at.source.replace("    dprobs = (1.0 / probs) * dlogprobs",
                                  "    dprobs = (1.0 / probs) * dlogprobs\n    raise ValueError('stuck here')")
    ce = cell(nb, "cross_entropy")
    ce.source = ce.source.replace("    n = logits.shape[0]\n", "    n = logits.shape[0]\n    while True:\n        pass\n")
    bn = cell(nb, "batchnorm")
    bn.source = "import sys\n" + bn.source.replace(
        "    n = dhpreact.shape[0]\n", "    n = dhpreact.shape[0]\n    print('warning: slow', file=sys.stderr)\n")
    report = grade_it(save(nb, tmp_path / "work.ipynb"), timeout=3)
    atomic = report.exercise("atomic")
    assert atomic.score == 0 and "ValueError" in atomic.message
    assert "cell 6, line" in (atomic.traceback or "")          # the notebook's cell, not the generated file
    ce_result = report.exercise("cross_entropy")
    assert ce_result.status == "timeout" and ce_result.score == 0
    bn_result = report.exercise("batchnorm")
    assert bn_result.score == bn_result.max_score                  # a warning on stderr costs nothing
    assert "warning: slow" in report.output.stderr
    assert report.exercise("embedding").score == 10 and report.exercise("train").score == 20
