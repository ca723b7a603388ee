"""Whole lecture notebooks as students leave them (tests/fixtures/notebooks/students/, built by students.py):
graded like the judge grades real ones, each gradient's verdict against what the notebook's own cmp
lines show, exercise 4 included. All are graded once, through one pre-warmed fork server.
"""

import ast
import importlib.util
import json
from pathlib import Path

import pytest

from grader.submission.notebook import parse_cells
from conftest import TESTS

FIXTURES = TESTS / "fixtures" / "notebooks"
STUDENTS = FIXTURES / "students"
_spec = importlib.util.spec_from_file_location("student_notebooks", FIXTURES / "students.py")
students = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(students)
GRADED_IDS = {1: "atomic", 2: "cross_entropy", 3: "batchnorm"}
NAMES = sorted(p.name for p in STUDENTS.glob("*.ipynb"))


def _meta(name):
    return json.loads((STUDENTS / name).read_text())["metadata"]["grader_test"]


def test_committed_notebooks_match_the_builder():
    import nbformat
    built = students.students()
    assert len(built) >= 15 and sorted(built) == NAMES
    for name, nb in built.items():
        assert (STUDENTS / name).read_text() == nbformat.writes(nb) + "\n", f"run python {FIXTURES / 'students.py'}"


@pytest.fixture(scope="module")
def reports(config, public_cases, tmp_path_factory):
    from grader.pipeline import grade
    from grader.sandbox.levels import choose_level
    from grader.sandbox.slot import Slot

    slot = Slot(tmp_path_factory.mktemp("slot"), choose_level(config.isolation), config)
    try:
        return {name: grade(STUDENTS / name, config, cases=public_cases, slot=slot) for name in NAMES}
    finally:
        slot.close()


@pytest.mark.parametrize("name", NAMES)
def test_grades_agree_with_the_students_own_cmp(reports, name):
    report, meta = reports[name], _meta(name)
    assert report.notebook.format == "lecture"
    verdicts = {f"{GRADED_IDS[n]}.{c.name}": c.status == "passed" for n in meta["exercises"]
                for c in report.exercise(GRADED_IDS[n]).checks}
    assert len(verdicts) == 28
    assert {k for k, ok in verdicts.items() if not ok} == set(meta["expected_failing"])
    for text in meta["expect"]:
        assert any(text in note for note in report.notebook.notes), (text, report.notebook.notes)


@pytest.mark.parametrize("name", NAMES)
def test_exercise_4_is_graded_as_its_cell_says(reports, name):
    train, expected = reports[name].exercise("train"), _meta(name)["train"]
    if expected is None:
        assert train.status == "not_submitted" and train.score == 0
        return
    assert len(train.checks) == 8
    if expected == "untouched":
        assert train.score == 0 and not [c for c in train.checks if c.status == "passed"]
        assert "p.grad" in train.message or "autograd" in train.message, train.message
        return
    failing = set() if expected == "full" else set(expected)
    assert {c.name for c in train.checks if c.status != "passed"} == failing
    assert train.score == train.max_score if not failing else 0 < train.score < train.max_score


def test_a_mistake_costs_only_what_it_breaks(reports):
    """Each one-mistake notebook loses exactly the points of the gradients it breaks, nothing else."""
    for name in ("mistake_ex2_no_mean.ipynb", "mistake_ex3_no_bessel.ipynb"):
        report = reports[name]
        lost = [e.id for e in report.exercises if e.max_score and e.score < e.max_score]
        assert lost == [{"mistake_ex2_no_mean.ipynb": "cross_entropy"}.get(name, "batchnorm")]


def test_a_fix_after_exercise_3_is_exercise_1s_last_value():
    from grader.submission.lecture.plan import build_plan

    plan = build_plan(parse_cells(students.students()["fixed_at_the_end.ipynb"]))
    assert plan.exercise_cells()["atomic"] == [11, 17]       # the fix, under exercise 3's header
    assert plan.exercise_cells()["batchnorm"] == [14, 15]
    # A cell under exercise 3's header that also computes exercise 3's own gradients stays there.
    nb = students.nbb.lecture_notebook(cells=[("code", "# Exercise 1\ndC = 1"), ("code", "# Exercise 3\nx = 1"),
                                              ("code", "dhprebn = dhpreact * 2\ndC = 2")])
    assert build_plan(parse_cells(nb)).exercise_cells() == {"atomic": [1], "batchnorm": [2, 3]}
    # Scratch work under exercise 2's header, with no cmp of its own, stays there too; checked, it moves.
    cells = [("code", "# Exercise 1\ndC = 1"), ("code", "# Exercise 2\nx = 1"), ("code", "dprobs = 1 / probs")]
    assert build_plan(parse_cells(students.nbb.lecture_notebook(cells=cells))).exercise_cells() == {
        "atomic": [1], "cross_entropy": [2, 3]}
    cells[-1] = ("code", "dprobs = 1 / probs\ncmp('probs', dprobs, probs)")
    assert build_plan(parse_cells(students.nbb.lecture_notebook(cells=cells))).exercise_cells() == {
        "atomic": [1, 3], "cross_entropy": [2]}


def test_torch_float32_reads_as_the_grading_dtype():
    import torch

    from grader.sandbox.inside.execute import as_lecture_ran

    node = ast.parse("x = torch.zeros((2, 3), dtype=torch.float32).to(torch.float)\ny = t.float32").body
    ns = {"torch": torch, "t": torch}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for stmt in node:
            exec(compile(ast.Module(body=[as_lecture_ran(stmt)], type_ignores=[]), "<cell>", "exec"), ns)
    finally:
        torch.set_default_dtype(previous)
    assert ns["x"].dtype == torch.float64
    assert ns["y"] is torch.float32  # only the name `torch` is read so: another alias is left alone


@pytest.mark.parametrize("source", ["C = torch.randn((vocab_size, n_embd), generator=g)",
                                    "W1 = torch.randn((30, 64), generator=g) * 0.2", "Xb, Yb = Xtr[ix], Ytr[ix]"])
def test_an_exercise_cell_that_initialises_the_network_keeps_the_graders(source):
    from grader.submission.lecture.policy import skip_reason

    assert skip_reason(ast.parse(source).body[0]) in (
        "re-initialises the parameters or the batch (the grader's are used)", "data loading")
    assert skip_reason(ast.parse("w1 = W1 * 1.0").body[0]) is None   # a name of the student's own still runs


def test_an_update_left_on_p_grad_costs_the_trajectory_and_says_why(reports):
    train = reports["ex4_update_not_switched.ipynb"].exercise("train")
    trajectory = next(c for c in train.checks if c.name == "trajectory")
    assert "p.grad" in trajectory.message and "autograd" in trajectory.message
