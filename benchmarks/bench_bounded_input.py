"""What reading hostile submissions costs the grading process, against reading an honest one, in the same run.

    .venv/bin/python benchmarks/bench_bounded_input.py

Each input is read (`grader.submission.load.load_submission`, the step before any
sandbox) in a fresh interpreter that has already imported the grader, and
measured there: wall time, peak memory (VmHWM, the process's own peak
resident size) and bytes read (/proc/self/io). Printed as ratios to reading
the release notebook (an honest notebook; a folder of .py files takes about a
millisecond), plus the absolute figures. The inputs: a zip of 1,500 entries
that inflate to 375 MB, a sparse 2 GiB .py file, a notebook of 100,000 nested
brackets, a 1 MB notebook of 250,000 tiny statements, and the costliest
notebook still read: one just under the statement budget, in the lecture's
layout.
"""

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURE = """
import json, sys, time
from pathlib import Path
def rchar():
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar"))
import grader.submission.notebook, grader.submission.lecture.plan
from grader.submission.load import SubmissionError, load_submission
before, t0 = rchar(), time.perf_counter()
try:
    load_submission(Path(sys.argv[1]))
    outcome = "read"
except SubmissionError as err:
    outcome = "refused: " + str(err)[:60]
with open("/proc/self/status") as fh:  # this process's own peak (ru_maxrss carries the parent's over exec)
    peak_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - t0, "read_mb": (rchar() - before) / 2**20,
                  "peak_mb": peak_kb / 1024, "outcome": outcome}))
"""


def notebook(path: Path, sources: list[str]) -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Exercise 1"}]
    cells += [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
              for s in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def inputs(tmp: Path) -> dict[str, Path]:
    from grader.submission.bounded import MAX_STATEMENTS

    bomb = tmp / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for i in range(1500):
            archive.writestr(f"f{i:04}.py", b"#" * (256 << 10))
    sparse = tmp / "sparse"
    sparse.mkdir()
    with open(sparse / "atomic.py", "wb") as fh:
        fh.truncate(2 << 30)
    deep = tmp / "deep.ipynb"
    deep.write_bytes(b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    per_cell = 100
    return {
        "release notebook (baseline)": ROOT / "assignments" / "backprop_ninja.ipynb",
        "solutions folder": ROOT / "solutions",
        "zip of 1500 entries": bomb,
        "sparse 2 GiB .py": sparse,
        "100,000 nested brackets": deep,
        "1 MB of tiny statements": notebook(tmp / "tiny.ipynb", ["x=1\n" * 2500] * 100),
        f"{MAX_STATEMENTS} statements (just read)": notebook(
            tmp / "budget.ipynb", ["dx = 1\n" * per_cell] * (MAX_STATEMENTS // per_cell - 1)),
    }


def measure(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-bounded-") as tmp:
        results = {name: measure(path) for name, path in inputs(Path(tmp)).items()}
    base = results["release notebook (baseline)"]
    print(f"{'input':<32} {'time':>7} {'x base':>7} {'peak MB':>8} {'x base':>7} {'MB read':>8}  outcome")
    for name, r in results.items():
        print(f"{name:<32} {r['seconds']:>6.2f}s {r['seconds'] / base['seconds']:>7.1f} {r['peak_mb']:>8.0f} "
              f"{r['peak_mb'] / base['peak_mb']:>7.2f} {r['read_mb']:>8.1f}  {r['outcome']}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
