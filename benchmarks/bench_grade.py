"""One grade against a bare `python -c "import torch"`, measured in the same run.

    .venv/bin/python benchmarks/bench_grade.py [--repeat 5] [--no-cache]

Grades, hidden cases on (a throwaway secret): the `.py` submission (default: solutions/) and a
lecture-format notebook (default: tests/fixtures/notebooks/lecture_correct.ipynb). Runs are
interleaved, so machine noise hits all of them alike. Prints each median wall time, its ratio to
the bare import (targets: .py <= 1.15x, lecture notebook <= 1.2x), the CPU time, the peak RSS of
each command (the grading process or its worker, whichever is larger), and a phase breakdown of
one more grade of each (the grading process's GRADER_PHASES marks: where the wall time goes).
The reference cache (grader.course.refcache) lives in a temporary folder, filled by a first grade;
--no-cache grades without it (every grade builds the cases and their references).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"py": 1.15, "notebook": 1.2}


def run(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """(wall s, CPU s, max RSS MiB) of one command and everything it waited for."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode not in (0, 1):  # 1: under --min-score; not used here, but not a failure to time
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def phases(cmd: list[str], env: dict, log: Path) -> list[tuple[float, float, str]]:
    """One grade with GRADER_PHASES: (seconds since launch, seconds since the previous mark, label)."""
    log.unlink(missing_ok=True)
    start = time.time()
    wall, _, _ = run(cmd, {**env, "GRADER_PHASES": str(log)})
    marks, previous = [], start
    for line in log.read_text().splitlines():
        stamp, label = line.split(" ", 1)
        marks.append((float(stamp) - start, float(stamp) - previous, label))
        previous = float(stamp)
    marks.append((wall, start + wall - previous, "process ended"))
    return marks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--submission", default="solutions")
    parser.add_argument("--notebook", default="tests/fixtures/notebooks/lecture_correct.ipynb")
    parser.add_argument("--no-cache", action="store_true", help="grade without the reference cache")
    args = parser.parse_args()

    env = {**os.environ, "GRADER_SECRET": "benchmark-secret"}
    with tempfile.TemporaryDirectory() as tmp:
        cache = ["--no-cache"] if args.no_cache else ["--cache-dir", f"{tmp}/cache"]
        commands = {
            "bare": [sys.executable, "-c", "import torch"],
            "py": [sys.executable, "-m", "grader", "grade", args.submission, "--quiet", "--out", f"{tmp}/py.json",
                   *cache],
            "notebook": [sys.executable, "-m", "grader", "grade", args.notebook, "--quiet", "--out",
                         f"{tmp}/nb.json", *cache],
        }
        for cmd in commands.values():  # warm the page cache (and the reference cache)
            run(cmd, env)
        times = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                times[name].append(run(cmd, env))
        breakdown = {name: phases(commands[name], env, Path(tmp) / "phases.log") for name in ("py", "notebook")}

    bare = statistics.median(t[0] for t in times["bare"])
    bare_cpu = statistics.median(t[1] for t in times["bare"])
    print(f"hidden cases on; reference cache {'off' if args.no_cache else 'on'}; {args.repeat} interleaved runs")
    for name, label in (("bare", "bare `import torch`"), ("py", f"grade {args.submission}"),
                        ("notebook", f"grade {Path(args.notebook).name}")):
        walls = [t[0] for t in times[name]]
        wall, cpu = statistics.median(walls), statistics.median(t[1] for t in times[name])
        rss = max(t[2] for t in times[name])
        ratio = "" if name == "bare" else (f"  ratio {wall / bare:.2f}x (target <= {TARGETS[name]}x), "
                                           f"CPU {cpu / bare_cpu:.2f}x")
        print(f"{label:32s} median {wall:.3f} s, CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB{ratio}")
        print(f"{'':32s} runs: {', '.join(f'{w:.2f}' for w in walls)}")
    for name, marks in breakdown.items():
        print(f"\nphases of one grade ({name}): seconds since launch, (+ since the previous mark)")
        for at, delta, label in marks:
            print(f"  {at:7.3f}  (+{delta:6.3f})  {label}")


if __name__ == "__main__":
    main()
