"""Release as data: every registered exercise round-trips, the defaults, the generated helper cell, `--config`."""

import ast
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from grader.cli import main
from grader.config import load_config
from grader.course import mlp
from grader.course.registry import BUILT_IN, EXERCISES
from grader.release.build import (BEGIN, END, NOTEBOOK, ReleaseError, SourceFile, build_notebook,
                                  check_code, helpers, lesson, release_outputs, strip_solutions, unmark_solutions)

from conftest import ROOT

# Every course of the repository: the lecture's (grading.yaml) and those under examples/ with their own.
COURSES = [ROOT / "grading.yaml", *sorted(ROOT.glob("examples/*/grading.yaml"))]


def _course_exercises():
    out = []
    saved = dict(EXERCISES)
    try:
        for path in COURSES:
            config = load_config(path)
            out += [(path, EXERCISES[ex_id]) for ex_id in config.exercises]
    finally:  # loading a course registers its exercises process-wide: at collection, that would reach every test
        EXERCISES.clear()
        EXERCISES.update(saved)
    return out


@pytest.mark.parametrize("course, ex", _course_exercises(),
                         ids=lambda v: v.parent.name if isinstance(v, Path) else getattr(v, "id", str(v)))
def test_release_round_trips_for_every_registered_exercise(course, ex):
    """The committed stub is the solution with each region replaced by its TODO lines, and nothing else."""
    solutions, assignments = course.parent / "solutions", course.parent / "assignments"
    solution = (solutions / ex.file).read_text()
    stub = (assignments / ex.file).read_text()
    assert stub == strip_solutions(solution, ex.file)
    assert BEGIN not in stub and END not in stub
    kept = "".join(line for line in solution.splitlines(keepends=True) if line.strip() not in (BEGIN, END))
    assert unmark_solutions(solution, ex.file) == kept          # the reference, only its markers removed
    # Every region's answers are left to do, and the stub still parses and defines the function.
    regions = solution.count(BEGIN)
    assert regions >= 1 and stub.count("= None  # TODO") >= regions
    tree = ast.parse(stub)
    assert any(isinstance(n, ast.FunctionDef) and n.name == ex.function for n in tree.body)


def _extra(ex_id="extra", **fields):
    base = EXERCISES["batchnorm"]
    fields = {"lesson": None, "check_cell": None, **fields}
    return replace(base, id=ex_id, file=f"{ex_id}.py", function=f"{ex_id}_backward", title="An extra exercise",
                   **fields)


def _files(exercises):
    files = {}
    for ex in exercises:
        if ex in BUILT_IN:
            solution = (ROOT / "solutions" / ex.file).read_text()
        else:
            solution = (f"import torch\n\n\ndef {ex.function}(dhpreact, bngain, bnraw, bnvar_inv):\n"
                        f"    # BEGIN SOLUTION\n    dhprebn = dhpreact * 2\n    # END SOLUTION\n    return dhprebn\n")
        files[ex.file] = SourceFile(ex.file, solution, strip_solutions(solution))
    return files


def test_an_exercise_without_lesson_or_check_cell_gets_generic_ones():
    extra = _extra()
    exercises = (*BUILT_IN, extra)
    nb = build_notebook(_files(exercises), solved=False, exercises=exercises)
    cells = {c.id: c for c in nb.cells}
    assert cells["extra-md"].source.startswith("## An extra exercise\n")
    assert "`extra_backward(dhpreact, bngain, bnraw, bnvar_inv)`" in cells["extra-md"].source
    assert "returns `dhprebn`" in cells["extra-md"].source
    check = cells["extra-check"].source
    assert check.startswith('if not show_graded("extra", extra_backward):\n')
    assert "no check of its own" in check
    compile(check, "<check>", "exec")                                   # a cell that runs
    assert cells["extra"].metadata["tags"] == ["extra"] and "dhprebn = None  # TODO" in cells["extra"].source
    assert "| `extra` | `extra_backward` | An extra exercise |" in cells["intro"].source
    # A dict-returning exercise's generic lesson names its keys.
    assert "keyed by `C`, `W1`" in lesson(replace(EXERCISES["train"], lesson=None))


def test_an_exercise_whose_data_file_is_missing_is_a_clear_error(tmp_path):
    broken = _extra(lesson="lessons/nowhere.md", origin=str(tmp_path / "extra_exercise.py"))
    with pytest.raises(ReleaseError, match=r"exercise 'extra': cannot read its lesson .*nowhere\.md"):
        lesson(broken)
    with pytest.raises(ReleaseError, match="cannot read its check cell"):
        check_code(_extra(check_cell="nowhere_check.py", origin=str(tmp_path / "x.py")))


def test_the_helper_cell_is_generated_from_the_graders_model():
    """One copy of the model: the notebook's forward and initialisation are course/mlp.py's own source."""
    import inspect

    import torch

    cell = helpers()
    for function in (mlp.init_params, mlp.forward):
        assert inspect.getsource(function) in cell
    shape = ", ".join(f"{k}={v}" for k, v in mlp.LECTURE_SHAPE.items())
    assert f"def make_case(seed=2147483647, {shape}):" in cell
    # Run as the notebook runs it: the model's constants come with it, and make_case() is autograd's answer key.
    namespace = {"torch": torch}
    torch.set_default_dtype(torch.float64)
    try:
        exec(compile(cell, "<helpers>", "exec"), namespace)
        tensors, grads = namespace["make_case"](**namespace["CASES"]["small"])
    finally:
        torch.set_default_dtype(torch.float32)
    assert namespace["ATOMIC"] == mlp.ATOMIC and namespace["FORWARD_ARGS"] == mlp.FORWARD_ARGS
    assert set(tensors) == set(mlp.FORWARD_ARGS) and set(grads) == set(mlp.ATOMIC)
    assert tensors["C"].shape == (13, 4) and grads["W1"].shape == (20, 17)


def _tiny_course(tmp_path: Path) -> Path:
    """A course of its own, beside the repository: one exercise defined in its folder, no lecture exercise."""
    course = tmp_path / "tiny"
    (course / "solutions").mkdir(parents=True)
    (course / "tiny_exercise.py").write_text(textwrap.dedent('''
        from grader.course.spec import Exercise, GradientCheck


        def build(case, generator):
            import torch
            x = torch.randn((case.spec.n, 3), generator=generator, dtype=torch.float64)
            return {"x": x, "dout": torch.ones_like(x)}, {"x": 2 * x}


        EXERCISE = Exercise(id="tiny_square", title="Squares", file="tiny_square.py", function="square_backward",
                            tensor_args=("dout", "x"), checks=(GradientCheck("x"),), returns_dict=False, build=build)
    '''))
    (course / "grading.yaml").write_text(textwrap.dedent('''
        version: "tiny-1"
        definitions: [tiny_exercise.py]
        exercises:
          tiny_square: {points: 10}
        cases:
          - {name: one, seed: 1, n: 4}
    '''))
    (course / "solutions" / "tiny_square.py").write_text(
        "def square_backward(dout, x):\n    # BEGIN SOLUTION\n    dx = 2 * x * dout\n    # END SOLUTION\n    return dx\n")
    return course


def test_release_config_writes_the_courses_own_stubs_beside_its_yaml(tmp_path, capsys):
    course = _tiny_course(tmp_path)
    config = str(course / "grading.yaml")
    assert main(["release", "--config", config, "--check"]) == 1
    assert "tiny_square.py is missing" in capsys.readouterr().err
    assert main(["release", "--config", config]) == 0
    stub = (course / "assignments" / "tiny_square.py").read_text()
    assert stub == "def square_backward(dout, x):\n    dx = None  # TODO\n    return dx\n"
    assert sorted(p.name for p in (course / "assignments").iterdir()) == ["tiny_square.py"]  # no lecture notebook
    assert not (course / "solutions" / NOTEBOOK).exists()
    assert main(["release", "--config", config, "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    # Explicit folders still win over the ones beside the yaml.
    elsewhere = tmp_path / "elsewhere"
    assert main(["release", "--config", config, "--assignments", str(elsewhere)]) == 0
    assert (elsewhere / "tiny_square.py").read_text() == stub


def test_release_config_of_the_lecture_course_is_the_plain_release():
    config = load_config(ROOT / "grading.yaml")
    exercises = tuple(ex for ex in EXERCISES.values() if ex.id in config.exercises)
    assert release_outputs(ROOT / "solutions", ROOT / "assignments", exercises) == \
        release_outputs(ROOT / "solutions", ROOT / "assignments")
    assert main(["release", "--config", str(ROOT / "grading.yaml"), "--check"]) == 0


def test_answer_names_of_every_built_in_solution_match_its_checks():
    """Each lecture exercise's TODO lines name the d... variables its checks grade (none is forgotten)."""
    for ex in BUILT_IN:
        stub = (ROOT / "assignments" / ex.file).read_text()
        todo = {line.split("=")[0].strip() for line in stub.splitlines() if line.endswith("= None  # TODO")}
        graded = {"d" + c for c in ex.gradient_checks}
        assert graded <= todo, (ex.id, graded - todo)
