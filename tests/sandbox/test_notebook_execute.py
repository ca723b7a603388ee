"""Running a notebook top to bottom (grade --execute, or grading.yaml's notebook.execute).

The kernel is started by the sandboxed worker, so it runs under the same isolation; each cell has a
timeout; the report says which cell failed and why; the score never depends on it.
"""

from pathlib import Path

import nbformat
from nbformat import v4

from grader.sandbox.inside.execute import execute_notebook
from grader.sandbox.levels import choose_level
from conftest import MAX_SCORE, ROOT

SOLVED = ROOT / "solutions" / "backprop_ninja.ipynb"


def notebook_bytes(*sources: str) -> bytes:
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# A small notebook")]
                         + [v4.new_code_cell(s) for s in sources])
    return nbformat.writes(nb).encode()


def test_grading_yaml_asks_for_execution(grade_it, config):
    config = config.model_copy(update={"notebook": config.notebook.model_copy(update={"execute": True})})
    report = grade_it(SOLVED, config=config)
    run = report.notebook.execution
    assert run.status == "ok", run
    assert run.cells_run == run.cells_total == 13
    assert report.score == MAX_SCORE
    assert any("run top to bottom" in note for note in report.notes)


def test_the_failing_cell_is_named_and_a_warning_costs_nothing(config):
    data = notebook_bytes("import sys\nprint('careful', file=sys.stderr)",   # cell 2: stderr is fine
                          "%time x = 1",                                     # cell 3: IPython syntax is fine
                          "y = x / 0",                                       # cell 4: fails
                          "z = 2")                                           # cell 5: never runs
    run = execute_notebook(data, config, choose_level(config.isolation), cell_timeout=30)
    assert run.status == "failed"
    assert run.failed_cell == 4
    assert run.error == "ZeroDivisionError: division by zero"
    assert run.cells_run == 2 and run.cells_total == 4
    assert "ZeroDivisionError" in run.traceback and "\x1b[" not in run.traceback


def test_per_cell_timeout(config):
    data = notebook_bytes("x = 1", "import time\ntime.sleep(60)", "y = 2")
    run = execute_notebook(data, config, choose_level(config.isolation), cell_timeout=2)
    assert run.status == "timeout"
    assert run.failed_cell == 3
    assert run.cells_run == 1
    assert run.seconds < 40
