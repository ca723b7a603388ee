"""Time one `grader grade` against a bare `python -c "import torch"`, measured in the same run.

    .venv/bin/python benchmarks/bench_grade.py [--repeat 5]

Prints the median wall time of each, their ratio (target: <= 2.0), and the
peak memory (max RSS) of the grading process and of the worker.
"""

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--submission", default="solutions")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        grade = [sys.executable, "-m", "grader", "grade", args.submission, "--quiet", "--out", f"{tmp}/r.json"]
        bare = [sys.executable, "-c", "import torch"]
        timed(bare), timed(grade)  # warm the page cache
        bare_times, grade_times = [], []
        for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
            bare_times.append(timed(bare))
            grade_times.append(timed(grade))
    bare_s, grade_s = statistics.median(bare_times), statistics.median(grade_times)
    children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"bare `import torch`     median {bare_s:.3f} s  (runs: {', '.join(f'{t:.2f}' for t in bare_times)})")
    print(f"`grader grade {args.submission}` median {grade_s:.3f} s  (runs: {', '.join(f'{t:.2f}' for t in grade_times)})")
    print(f"ratio grade / bare torch import: {grade_s / bare_s:.2f}x  (target <= 2.0x)")
    print(f"peak RSS of a child process (grader or worker): {children_rss:.0f} MiB")


if __name__ == "__main__":
    main()
