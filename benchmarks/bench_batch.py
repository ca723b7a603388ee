"""Time `grader grade` and `grader batch` against a bare `python -c "import torch"`, measured in the same run.

    .venv/bin/python benchmarks/bench_batch.py [--submissions 100] [--jobs 2] [--repeat 3] [--no-secret]

Prints, as ratios to the median bare torch import:
- one `grader grade` of a correct .py submission (the solutions; target <= 1.15x);
- a batch of N submissions with --jobs J, per submission (total wall time / N; target <= 0.03x),
  then the same batch run again (every submission unchanged, so skipped);
and the memory: peak RSS of any one process, and the peak proportional set size (PSS: shared
pages split between the processes sharing them) of the whole batch, grader and fork servers.
Last, one more batch run in a process of its own prints where its time went, per submission
(grader.phases: seconds summed over the grading process's threads, so the slots' work and the
scoring thread's overlap): hashing and loading, the integrity scan, the workers (sessions in the
fork servers, seen from the slot threads), scoring and comparing, diagnosis, writing reports and
gradebook rows, and the scoring thread's idle wait for the next result.

The batch is a course-like mix: 70% correct (the solutions), 20% with typical mistakes
(examples/mistakes, each with dW2 off by a factor of its own, so that no two hand in the same wrong
values and diagnosis runs for every one), 10% untouched stubs (assignments/), each in a folder of its
own and each file headed by a comment naming its student, so that no two submissions are the same text
(the scan and the sharing check run for every one, as in a real course); the hidden cases run (a throwaway
secret) unless --no-secret. Last, the arithmetic floor (benchmarks/compute_floor.py): the least
any batch of N on J cores could take, one torch import plus N times the solutions' own work on
every case, spread over the J cores, and how far above it the run was.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env=None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def _tree_pss_kib(root: int) -> int:
    """The summed PSS of `root` and its descendants (what they really take together)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def peak_memory(cmd: list[str], env) -> int:
    """The peak PSS (KiB) of the process tree, sampled every 0.2 s (in a run of its own: sampling costs time)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_pss_kib(proc.pid))
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return peak


PHASES = """
import json, sys
from pathlib import Path
from grader.batch.run import run_batch
from grader.config import find_config
r = run_batch(Path(sys.argv[1]), Path(sys.argv[2]), find_config(None), secret=sys.argv[3] or None,
              jobs=int(sys.argv[4]), quiet=True, regrade=True)
print(json.dumps({"seconds": r.seconds, "phases": r.phases}))
"""

# (label, how to get it from the phases); `run` holds the scan, `score` holds the diagnosis.
SPLIT = [
    ("hash entries + load submissions", lambda p: p.get("hash", 0) + p.get("load", 0)),
    ("integrity scan (cached by content)", lambda p: p.get("scan", 0)),
    ("workers (fork-server sessions)", lambda p: p.get("run", 0) - p.get("scan", 0) - p.get("wait for server", 0)),
    ("waiting for a fork server to start (once a slot)", lambda p: p.get("wait for server", 0)),
    ("scoring + comparison", lambda p: p.get("score", 0) - p.get("diagnosis", 0)),
    ("diagnosis (once per distinct answers)", lambda p: p.get("diagnosis", 0)),
    ("report + gradebook row writes", lambda p: p.get("write", 0)),
    ("scoring thread idle (waiting for a result)", lambda p: p.get("wait", 0)),
    ("once per batch: servers, cases, summary",
     lambda p: p.get("start servers", 0) + p.get("build cases", 0) + p.get("summary", 0)),
]


def phase_split(course: Path, out: Path, env, jobs: int) -> dict:
    import json

    done = subprocess.run([sys.executable, "-c", PHASES, str(course), str(out), env.get("GRADER_SECRET", ""),
                           str(jobs)], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compute_floor(env, public_only: bool) -> dict:
    """benchmarks/compute_floor.py's figures: the solutions' own arithmetic on every case, in one warm process."""
    import json

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compute_floor.py"),
                           *(["--no-secret"] if public_only else [])],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# Appended to a student's atomic.py with mistakes: dW2 off by a factor of the student's own, so that no two
# wrong submissions hand in the same values (diagnosis then runs for each, as in a course).
OWN_MISTAKE = """

_their_backward_atomic = backward_atomic


def backward_atomic(**tensors):
    grads = _their_backward_atomic(**tensors)
    if grads.get("W2") is not None:
        grads["W2"] = grads["W2"] * {factor}
    return grads
"""


def make_course(folder: Path, count: int) -> None:
    sources = [(ROOT / "solutions", 7), (ROOT / "examples" / "mistakes", 2), (ROOT / "assignments", 1)]
    pattern = [src for src, weight in sources for _ in range(weight)]
    for i in range(count):
        target = folder / f"student{i:03d}"
        target.mkdir()
        source = pattern[i % len(pattern)]
        for file in source.glob("*.py"):  # every student's files their own text, as in a course
            text = f"# student{i:03d}\n" + file.read_text()
            if source.name == "mistakes" and file.name == "atomic.py":
                text += OWN_MISTAKE.format(factor=1 + (i + 1) / 1000)
            (target / file.name).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-secret", action="store_true", help="public cases only")
    args = parser.parse_args()

    env = {**os.environ}
    env.pop("GRADER_SECRET", None)
    if not args.no_secret:
        env["GRADER_SECRET"] = "benchmark-secret"
    with tempfile.TemporaryDirectory() as tmp:
        course, out = Path(tmp) / "course", Path(tmp) / "out"
        course.mkdir()
        make_course(course, args.submissions)
        bare = [sys.executable, "-c", "import torch"]
        grade = [sys.executable, "-m", "grader", "grade", "solutions", "--quiet", "--out", f"{tmp}/r.json"]
        batch = [sys.executable, "-m", "grader", "batch", str(course), "--out", str(out), "--jobs", str(args.jobs),
                 "--quiet"]
        timed(bare, env), timed(grade, env)  # warm the page cache
        bare_times, grade_times, batch_times, rerun_times = [], [], [], []
        for _ in range(args.repeat):  # interleaved, so machine noise hits all alike
            bare_times.append(timed(bare, env))
            grade_times.append(timed(grade, env))
            batch_times.append(timed([*batch, "--regrade"], env))
            rerun_times.append(timed(batch, env))
        pss = peak_memory([*batch, "--regrade"], env)
        split = phase_split(course, out, env, args.jobs)
        floor = compute_floor(env, args.no_secret)
    bare_s, grade_s = statistics.median(bare_times), statistics.median(grade_times)
    batch_s, rerun_s = statistics.median(batch_times), statistics.median(rerun_times)
    per = batch_s / args.submissions
    runs = lambda ts: ", ".join(f"{t:.2f}" for t in ts)  # noqa: E731
    hidden = "public cases only" if args.no_secret else "hidden cases included"
    print(f"bare `import torch`              median {bare_s:.3f} s  (runs: {runs(bare_times)})")
    print(f"`grader grade solutions`         median {grade_s:.3f} s  (runs: {runs(grade_times)})")
    print(f"`grader batch` of {args.submissions}, --jobs {args.jobs}   median {batch_s:.3f} s  "
          f"(runs: {runs(batch_times)}; {hidden})")
    print(f"  the same batch again (skipped)  median {rerun_s:.3f} s  (runs: {runs(rerun_times)}); "
          f"{rerun_s / batch_s:.0%} of the first run")
    print(f"ratio grade / bare torch import: {grade_s / bare_s:.2f}x  (target <= 1.15x)")
    print(f"ratio batch per submission / bare torch import: {per / bare_s:.3f}x  "
          f"({per * 1000:.0f} ms per submission; target <= 0.03x)")
    children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of one process (grader, fork server or worker): {children_rss:.0f} MiB")
    print(f"peak PSS of a whole batch (grader + {args.jobs} fork servers and their sessions): "
          f"{pss / 1024:.0f} MiB")
    n, phases = args.submissions, split["phases"]
    print(f"where a batch's time goes (one more run, {split['seconds']:.2f} s; thread-seconds per submission, "
          f"the {args.jobs} slot threads and the scoring thread overlap):")
    for label, value in SPLIT:
        print(f"  {label:48s} {value(phases) / n * 1000:7.1f} ms")
    # The fixed start (servers importing torch beside the grading process's own import) weighs on a
    # batch of 100; what each further submission costs is the rest, spread over the slots.
    start = phases.get("start servers", 0) + phases.get("build cases", 0) + phases.get("wait for server", 0) / args.jobs
    steady = (split["seconds"] - start) / n
    print(f"steady state (that run less its {start:.2f} s start): {steady * 1000:.0f} ms per submission "
          f"= {steady / bare_s:.3f}x; {1000 * steady + start:.0f} s for 1,000 submissions")
    # However it is built, a batch imports torch once before the first case runs, then does every
    # submission's arithmetic, at best spread evenly over the cores: what is above that is overhead.
    work = floor["ms_per_submission"] / 1000
    least = bare_s + args.submissions * work / args.jobs
    print(f"arithmetic floor (benchmarks/compute_floor.py): {work * 1000:.1f} ms of CPU per submission "
          f"(the solutions on all {floor['cases']} cases in one warm process, trajectories included: "
          + ", ".join(f"{ex} {ms:.1f}" for ex, ms in floor["ms_per_exercise"].items()) + ")")
    print(f"  so a batch of {args.submissions} on {args.jobs} cores takes at least one torch import + "
          f"{args.submissions} x {work * 1000:.1f} ms / {args.jobs} = {least:.2f} s = "
          f"{least / args.submissions / bare_s:.3f}x per submission; "
          f"this run spent {per * args.submissions / least:.1f}x that")


if __name__ == "__main__":
    main()
