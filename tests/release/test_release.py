"""`grader release`: stubs from the solutions, the two notebooks, and `--check`."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.cli import main
from grader.course.registry import BUILT_IN, EXERCISES
from grader.release.build import (NOTEBOOK, ReleaseError, answer_names, build_notebook, check_release,
                                  release_outputs, strip_solutions, unmark_solutions, write_release)

from conftest import ROOT



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
    for ex in BUILT_IN:
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
        assert list(tagged) == [ex.id for ex in BUILT_IN]
        for ex_id, cell in tagged.items():
            assert f"def {EXERCISES[ex_id].function}(" in cell.source
            assert cell.id == ex_id
        text = outputs[path]
        assert "names.txt" in text and "BEGIN SOLUTION" not in text


def test_student_notebook_holds_the_stubs_and_solved_one_the_solutions():
    files = {}
    from grader.release.build import SourceFile
    for ex in BUILT_IN:
        solution = (ROOT / "solutions" / ex.file).read_text()
        files[ex.file] = SourceFile(ex.file, solution, strip_solutions(solution))
    student = build_notebook(files, solved=False)
    solved = build_notebook(files, solved=True)
    cell = next(c for c in student.cells if c.id == "batchnorm")
    assert "dhprebn = None  # TODO" in cell.source
    cell = next(c for c in solved.cells if c.id == "batchnorm")
    assert "n / (n - 1)" in cell.source and "TODO" not in cell.source


# --- the check cells: the grader's inline view, or the plain cmp lines without it ---------------

def _execute(notebook: Path, first_cell: str | None = None) -> dict[str, list]:
    """Run a notebook as a student's kernel would (from its folder); outputs by cell id."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    if first_cell:
        nb.cells.insert(0, nbformat.v4.new_code_cell(first_cell))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    return {c.get("id"): c.outputs for c in nb.cells if c.cell_type == "code"}


def _html(outputs: list) -> str:
    return "".join(o["data"]["text/html"] for o in outputs if o.output_type == "display_data"
                   and "text/html" in o.get("data", {}))


def _stdout(outputs: list) -> str:
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


@pytest.fixture(scope="module")
def solved_run():
    return _execute(ROOT / "solutions" / NOTEBOOK)


def test_check_cells_show_the_grader_view_when_it_is_installed(solved_run):
    for ex in BUILT_IN:
        html = _html(solved_run[f"{ex.id}-check"])
        assert 'class="bpn"' in html, ex.id
        for check in ex.gradient_checks:
            assert f'id="bpn-{ex.id}-node-{check}"' in html, (ex.id, check)
        assert 'class="node verdict-right"' in html
        assert "FIX THIS FIRST" not in html and "public cases only" in html
        assert "approximate:" not in _stdout(solved_run[f"{ex.id}-check"])  # no duplicate cmp lines


def test_the_student_notebook_shows_what_is_still_to_do():
    outputs = _execute(ROOT / "assignments" / NOTEBOOK)
    html = _html(outputs["atomic-check"])
    assert 'id="bpn-atomic-node-logprobs"' in html and "not attempted" in html
    assert 'id="bpn-atomic-logprobs"' in html and "fix this first" in html  # the first one to do


def test_without_the_grader_the_check_cells_print_cmp_lines():
    outputs = _execute(ROOT / "solutions" / NOTEBOOK, 'import sys\nsys.modules["grader.outputs.jupyter"] = None')
    for ex in BUILT_IN:
        assert _html(outputs[f"{ex.id}-check"]) == "", ex.id
        text = _stdout(outputs[f"{ex.id}-check"])
        assert "--- case lecture" in text and "approximate: True" in text, ex.id


def test_check_cells_keep_the_plain_check_as_fallback():
    from grader.release.build import check_code, cmp_lines

    for ex in BUILT_IN:
        first, *rest = check_code(ex).splitlines()
        assert first == f'if not show_graded("{ex.id}", {ex.function}):'
        assert "\n".join(line.removeprefix("    ") for line in rest) == cmp_lines(ex)


# --- check() for any notebook, the lecture's own included ----------------------------------------

LECTURE = ROOT / "tests" / "fixtures" / "notebooks"


def test_check_grades_a_lecture_notebook_and_shows_it(monkeypatch):
    import grader.outputs.jupyter
    from grader import check

    shown = []
    monkeypatch.setattr(grader.outputs.jupyter, "_display", shown.append)
    monkeypatch.chdir(ROOT)
    check(LECTURE / "lecture_mistakes.ipynb")
    (html,) = shown
    assert "on the public cases" in html and "lecture_mistakes.ipynb" in html
    assert 'id="bpn-atomic-node-C"' in html and "FIX THIS FIRST" in html


def test_check_finds_the_notebook_being_run(monkeypatch, tmp_path):
    from grader.config import ConfigError
    from grader.outputs.jupyter import notebook_path

    one = tmp_path / "mine.ipynb"
    one.write_text("{}")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert notebook_path() == one                            # the only notebook here
    (tmp_path / "other.ipynb").write_text("{}")
    with pytest.raises(ConfigError, match="check\\('your_notebook.ipynb'\\)"):
        notebook_path()                                       # two: ask for the path
    monkeypatch.setenv("JPY_SESSION_NAME", str(one))          # what Jupyter tells the kernel
    assert notebook_path() == one


def test_check_asks_colab_for_its_notebook(monkeypatch, tmp_path):
    """Colab keeps the notebook in the browser; its front end hands the JSON over."""
    import sys
    import types

    from grader.outputs.jupyter import notebook_path

    requests = []

    def blocking_request(kind, request="", timeout_sec=None):
        requests.append(kind)
        return {"ipynb": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}

    colab = types.ModuleType("google.colab")
    colab._message = types.SimpleNamespace(blocking_request=blocking_request)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    path = notebook_path()
    assert requests == ["get_ipynb"] and path.suffix == ".ipynb"
    assert nbformat.reads(path.read_text(), as_version=4).nbformat == 4


def test_the_view_needs_the_course_config(monkeypatch, tmp_path, capsys):
    from grader.outputs.jupyter import show

    monkeypatch.chdir(tmp_path)  # no grading.yaml here or above
    assert show("atomic", lambda **kw: {}) is False
    assert "grading.yaml" in capsys.readouterr().out
