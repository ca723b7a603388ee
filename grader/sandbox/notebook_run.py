"""`grade --execute`, grading side: run a notebook top to bottom in a sandboxed worker, in the run phase.

The worker (grader.sandbox.inside.nbrun) runs the notebook with nbclient and reports each cell on its
answer channel; this reads those frames, with a deadline per phase (kernel start, each cell), and turns
them into the report's NotebookExecution. grader.pipeline calls it before scoring, and scoring only
records the result: it never changes the score, and nothing here is student code.
"""

import json
import tempfile
import time
from pathlib import Path

from grader.report import NotebookExecution
from grader.sandbox.levels import Mounts
from grader.sandbox.handle import STARTUP_TIMEOUT, WorkerProcess

KERNEL_STARTUP = 90.0
MARGIN = 30.0


def execute_notebook(data: bytes, config, level: str, cell_timeout: float):
    """Run a notebook in a sandboxed worker; the report's NotebookExecution."""
    t0 = time.monotonic()
    outcome = NotebookExecution(status="ok", cell_timeout_s=cell_timeout)
    with tempfile.TemporaryDirectory(prefix="grader-exec-") as tmp:
        root = Path(tmp)
        mounts = Mounts(inputs=root / "inputs", submission=root / "submission", cwd=root / "cwd")
        for folder in (mounts.inputs, mounts.submission, mounts.cwd):
            folder.mkdir()
        notebook = mounts.inputs / "notebook.ipynb"
        notebook.write_bytes(data)
        plan_path = mounts.inputs / "plan.json"
        plan_path.write_text(json.dumps({
            "mode": "execute", "dtype": config.dtype, "submission": str(mounts.submission),
            "inputs": str(mounts.inputs), "cwd": str(mounts.cwd), "notebook": str(notebook),
            "cell_timeout": cell_timeout, "startup_timeout": KERNEL_STARTUP}))
        worker = WorkerProcess(level, config.limits, mounts, plan_path)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        current = None
        try:
            while True:
                meta, blob = worker.next_frame(deadline)
                if meta == "timeout":
                    outcome.status = "timeout"
                    outcome.failed_cell = current
                    outcome.message = (f"cell {current} did not finish within {cell_timeout:g} s" if current
                                       else "the notebook's kernel did not start in time")
                    break
                if meta in ("eof", "protocol"):
                    outcome.status = "error"
                    outcome.failed_cell = current
                    outcome.message = f"the notebook's process stopped: it {worker.exit_description()}"
                    break
                kind = meta.get("type")
                if kind == "hello":
                    worker.go()
                    deadline = time.monotonic() + KERNEL_STARTUP + MARGIN
                elif kind == "execution_start":
                    outcome.cells_total = int(meta.get("cells", 0))
                elif kind == "kernel_ready":
                    deadline = time.monotonic() + cell_timeout + MARGIN
                elif kind == "cell_start":
                    current = int(meta.get("cell", 0))
                    deadline = time.monotonic() + cell_timeout + MARGIN
                elif kind == "cell_end":
                    status = str(meta.get("status"))
                    if status == "ok":
                        outcome.cells_run += 1
                    else:
                        outcome.status = status if status in ("failed", "timeout", "error") else "error"
                        outcome.failed_cell = int(meta.get("cell", 0))
                        outcome.error = str(meta.get("error", ""))[:500] or None
                        outcome.traceback = str(meta.get("traceback", ""))[-4000:] or None
                        outcome.message = f"cell {outcome.failed_cell} {_verb(outcome.status)}: {outcome.error}"
                    current = None
                    deadline = time.monotonic() + cell_timeout + MARGIN
                elif kind == "execution_error":
                    outcome.status = "error"
                    outcome.error = str(meta.get("message", ""))[:500]
                    outcome.message = f"the notebook could not be run: {outcome.error}"
                elif kind == "done":
                    break
        finally:
            worker.kill()
    if outcome.status == "ok":
        outcome.message = f"all {outcome.cells_total} code cells ran without an error"
    outcome.seconds = round(time.monotonic() - t0, 3)
    return outcome


def _verb(status: str) -> str:
    return {"failed": "raised an error", "timeout": "timed out", "error": "stopped the kernel"}.get(status, status)
