"""`grader release`: stubs from the solutions, the two notebooks, and `--check`."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.cli import main
from grader.exercises import EXERCISES
from grader.release import (NOTEBOOK, ReleaseError, answer_names, build_notebook, check_release,
                            release_outputs, strip_solutions, unmark_solutions, write_release)

ROOT = Path(__file__).resolve().parent.parent


def test_committed_release_is_up_to_date():
    """The committed stubs and notebooks are byte for byte what `grader release` writes."""
    assert check_release(ROOT / "solutions", ROOT / "assignments") == []


def test_release_check_command_on_the_repository():
    proc = subprocess.run([sys.executable, "-m", "grader", "release", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout


def test_round_trip_in_a_copy(tmp_path, capsys):
    solutions, assignments = tmp_path / "solutions", tmp_path / "assignments"
    shutil.copytree(ROOT / "solutions", solutions)
    assignments.mkdir()
    assert main(["release", "--check", "--solutions", str(solutions), "--assignments", str(assignments)]) == 1
    assert "is missing" in capsys.readouterr().err
    assert main(["release", "--solutions", str(solutions), "--assignments", str(assignments)]) == 0
    for ex in EXERCISES.values():
        assert (assignments / ex.file).read_bytes() == (ROOT / "assignments" / ex.file).read_bytes()
    assert (assignments / NOTEBOOK).read_bytes() == (ROOT / "assignments" / NOTEBOOK).read_bytes()
    assert main(["release", "--check", "--solutions", str(solutions), "--assignments", str(assignments)]) == 0
    # A second release changes nothing, and a hand edit is caught.
    assert write_release(solutions, assignments) == []
    (assignments / "atomic.py").write_text((assignments / "atomic.py").read_text() + "# edited\n")
    problems = check_release(solutions, assignments)
    assert len(problems) == 1 and "atomic.py" in problems[0]


def test_stubs_have_one_todo_per_answer_in_order():
    text = strip_solutions((ROOT / "solutions" / "atomic.py").read_text())
    todo = [line.split("=")[0].strip() for line in text.splitlines() if line.endswith("= None  # TODO")]
    assert todo[:3] == ["dlogprobs", "dprobs", "dcounts_sum_inv"]
    assert len(todo) == 26 and todo[-1] == "dC"
    assert "BEGIN SOLUTION" not in text and "index_add_" not in text


def test_strip_rules():
    source = ("def f(x):\n    n = 3\n    # BEGIN SOLUTION\n    da = x * 2\n    da += 1\n    db, dc = x, x\n"
              "    for i in range(2):\n        dz = i\n    da = da * 1\n    # END SOLUTION\n    return da, db, dc\n")
    assert strip_solutions(source) == ("def f(x):\n    n = 3\n    da = None  # TODO\n    db = None  # TODO\n"
                                       "    dc = None  # TODO\n    return da, db, dc\n")
    assert "BEGIN" not in unmark_solutions(source) and "da += 1" in unmark_solutions(source)
    assert answer_names(["    dx = 1\n", "    dx == 2\n", "    dy[0] = 1\n"], "    ") == ["dx"]
    with pytest.raises(ReleaseError, match="never closed"):
        strip_solutions("    # BEGIN SOLUTION\n    da = 1\n")
    with pytest.raises(ReleaseError, match="without a matching"):
        strip_solutions("    # END SOLUTION\n")
    with pytest.raises(ReleaseError, match="assigns no"):
        strip_solutions("    # BEGIN SOLUTION\n    pass\n    # END SOLUTION\n")


def test_notebooks_are_deterministic_and_clean():
    outputs = release_outputs(ROOT / "solutions", ROOT / "assignments")
    again = release_outputs(ROOT / "solutions", ROOT / "assignments")
    assert outputs == again
    for path in (ROOT / "assignments" / NOTEBOOK, ROOT / "solutions" / NOTEBOOK):
        nb = nbformat.reads(outputs[path], as_version=4)
        nbformat.validate(nb)
        ids = [c.id for c in nb.cells]
        assert len(set(ids)) == len(ids)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
        tagged = {c.metadata["tags"][0]: c for c in nb.cells if c.metadata.get("tags")}
        assert list(tagged) == list(EXERCISES)
        for ex_id, cell in tagged.items():
            assert f"def {EXERCISES[ex_id].function}(" in cell.source
            assert cell.id == ex_id
        text = outputs[path]
        assert "names.txt" in text and "BEGIN SOLUTION" not in text


def test_student_notebook_holds_the_stubs_and_solved_one_the_solutions():
    files = {}
    from grader.release import SourceFile
    for ex in EXERCISES.values():
        solution = (ROOT / "solutions" / ex.file).read_text()
        files[ex.file] = SourceFile(ex.file, solution, strip_solutions(solution))
    student = build_notebook(files, solved=False)
    solved = build_notebook(files, solved=True)
    cell = next(c for c in student.cells if c.id == "batchnorm")
    assert "dhprebn = None  # TODO" in cell.source
    cell = next(c for c in solved.cells if c.id == "batchnorm")
    assert "n / (n - 1)" in cell.source and "TODO" not in cell.source
