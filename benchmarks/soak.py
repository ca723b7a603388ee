"""A whole course in one batch: memory stays flat, nothing is left behind, every row is what grading alone gives.

    .venv/bin/python benchmarks/soak.py [--submissions 2000] [--jobs 2] [--timeout 1] [--sample 20] [--no-secret]

Builds a mixed course, as a real one hands in (each submission's files carry its own comment line, so
no two have the same content):
- 50% folders of correct .py files, half of them right in bits of their own (OWN_ROUNDING);
- 25% wrong: examples/mistakes, each with values of its own, and the wrong variants of tests/fixtures;
- 5% crashing (segfault, os._exit, an exception at import), 5% hung (an infinite loop: --timeout
  decides how long it costs);
- 15% notebooks handed in as one `.ipynb` file: a third the course's own notebook (solved or
  untouched), two thirds the lecture's notebook as students leave it (tests/fixtures/notebooks:
  correct, wrong, half done, every layout habit there), the comment line heading their first code cell.
Runs `grader batch` on it with the hidden cases (a throwaway secret) and prints:
- at the 100th, 500th, 1000th and 2000th graded row: the memory (RSS and PSS) of the grading process
  and of each fork server, and the grading process's open file descriptors; then the growth from the
  100th to the last (target: under 10%), and the peak RSS of the whole run, its end included (the
  summary reads every report);
- what is left once the batch has ended: folders in its temporary folder (TMPDIR is a fresh one),
  processes that mention it;
- for a sample of the submissions, graded again one by one with `grader grade`: any difference in the
  score, the per-exercise scores or any check's status, score or hint.
"""

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
HOSTILE = ROOT / "tests" / "hostile"
CHECKPOINTS = (100, 500, 1000, 2000)


def _notebooks() -> tuple[list[Path], list[Path]]:
    """The notebooks a course hands in: ours (solved, or untouched), and the lecture's as students leave it
    (the test fixtures)."""
    lecture = FIXTURES / "notebooks"
    ours = [ROOT / "solutions" / "backprop_ninja.ipynb", ROOT / "assignments" / "backprop_ninja.ipynb"]
    return ours, [*sorted(lecture.glob("lecture_*.ipynb")), *sorted((lecture / "students").glob("*.ipynb")),
                  *sorted((lecture / "patterns").glob("*.ipynb"))]


def _own_notebook(source: Path, name: str) -> str:
    """`source` with `# name` heading its first code cell, so that no two students hand in the same cells."""
    notebook = nbformat.read(source, as_version=4)
    cell = next((c for c in notebook.cells if c.cell_type == "code"), None)
    if cell is not None:
        cell.source = f"# {name}\n{cell.source}"
    return nbformat.writes(notebook)


# Appended to a student's atomic.py: its gradients times a factor of the student's own. A rounding (1 + i 2^-50)
# leaves them right in other bits; a mistake's (1 + i / 1000) makes each wrong student's values their own. A real
# course is like that: the caches of passed answers and of diagnoses see many answers only once.
OWN_ROUNDING = """

_their_backward_atomic = backward_atomic


def backward_atomic(**tensors):
    grads = _their_backward_atomic(**tensors)
    return {{k: v * {factor} if v is not None else v for k, v in grads.items()}}
"""


def make_course(folder: Path, count: int, seed: int = 0) -> dict[str, str]:
    """The course's submissions (a folder or an .ipynb file each, as discovered), and the kind of each."""
    rng = random.Random(seed)
    ours, lecture = _notebooks()
    solutions = {p.name: p.read_text() for p in (ROOT / "solutions").glob("*.py")}
    mistakes = {p.name: p.read_text() for p in (ROOT / "examples" / "mistakes").glob("*.py")}
    variants = [(f, s) for f, s in ((p.name.split("__")[0] + ".py", p.read_text())
                                    for p in sorted((FIXTURES / "variants").glob("*__*.py"))) if f in solutions]
    crashes = [("batchnorm.py", (HOSTILE / "batchnorm__segfault.py").read_text()),
               ("batchnorm.py", (HOSTILE / "batchnorm__os_exit.py").read_text()),
               ("atomic.py", (HOSTILE / "atomic__sys_exit_at_import.py").read_text())]
    hung = ("atomic.py", (HOSTILE / "atomic__infinite_loop.py").read_text())
    kinds = {}
    for i in range(count):
        name = f"student{i:04d}"
        roll = rng.random()
        files = dict(solutions)
        if roll >= 0.85:
            kinds[name] = "our notebook" if roll < 0.90 else "lecture notebook"
            source = rng.choice(ours if roll < 0.90 else lecture)
            (folder / f"{name}.ipynb").write_text(_own_notebook(source, name))
            continue
        if roll < 0.50:
            kind = "correct"
            if roll < 0.25:  # a rounding of their own: right, in bits nobody else hands in
                files["atomic.py"] = files["atomic.py"] + OWN_ROUNDING.format(factor=f"(1 + {i} * 2 ** -50)")
        elif roll < 0.62:
            kind, files = "wrong", dict(mistakes)
            files["atomic.py"] = files["atomic.py"] + OWN_ROUNDING.format(factor=f"(1 + {i + 1} / 1000)")
        elif roll < 0.75:
            kind = "wrong"
            file, source = rng.choice(variants)  # a variant may be right: fine, it is graded either way
            files[file] = source
        elif roll < 0.80:
            kind = "crashing"
            file, source = rng.choice(crashes)
            files[file] = source
        else:
            kind = "hung"
            files[hung[0]] = hung[1]
        target = folder / name
        target.mkdir()
        for file, source in files.items():
            (target / file).write_text(f"# {name}\n{source}")
        kinds[name] = kind
    return kinds


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            found.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return found


def _tree(root: int) -> list[int]:
    children, todo, out = _children(), [root], []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _is_server(pid: int) -> bool:
    """A Python process running `grader.worker --serve` (bubblewrap's own processes carry it as an argument)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"--serve" in cmdline and b"python" in Path(cmdline[0].decode(errors="replace")).name.encode()


def _servers(root: int) -> list[int]:
    """The fork servers below the batch (not their sessions, forks of them that come and go)."""
    servers = []
    for pid in _tree(root):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if _is_server(pid) and not _is_server(parent):
            servers.append(pid)
    return servers


def _rows(out: Path) -> int:
    try:
        with sqlite3.connect(f"file:{out / 'gradebook.sqlite'}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT count(*) FROM submissions").fetchone()[0]
    except sqlite3.Error:
        return 0


def _mentioning(marker: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{entry}: {cmdline.replace(chr(0), ' ')[:120]}")
    return found


def _summary(report: dict) -> list:
    """What a gradebook row and a student see of a report: scores, statuses and hints, check by check."""
    return [(e["id"], e["score"], e["status"], [(c["name"], c["score"], c["status"], c.get("hint"))
                                                  for c in e["checks"]]) for e in report["exercises"]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1.0, help="per exercise: what a hung submission costs")
    parser.add_argument("--sample", type=int, default=20, help="submissions graded again one by one")
    parser.add_argument("--no-secret", action="store_true")
    args = parser.parse_args()
    # the last sample while the last submissions still run: once the servers are gone, the grader's PSS
    # (its share of pages it shares with them) rises without it using any more memory
    last = max(1, args.submissions - 2 * args.jobs)
    points = sorted({p for p in CHECKPOINTS if p < last} | {last})

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        tmp = Path(tmp)
        course, out, work = tmp / "course", tmp / "out", tmp / "tmpdir"
        course.mkdir()
        work.mkdir()
        work.chmod(0o711)
        kinds = make_course(course, args.submissions)
        env = {**os.environ, "TMPDIR": str(work)}
        env.pop("GRADER_SECRET", None)
        if not args.no_secret:
            env["GRADER_SECRET"] = "soak-secret"
        cmd = [sys.executable, "-m", "grader", "batch", str(course), "--out", str(out), "--jobs", str(args.jobs),
               "--timeout", str(args.timeout), "--quiet", "--config", str(ROOT / "grading.yaml")]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen: dict[int, dict] = {}
        todo = list(points)
        while True:
            ended, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if ended:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.2)
            done = _rows(out)
            while todo and done >= todo[0]:
                servers = _servers(proc.pid)
                m = seen[todo.pop(0)] = {"rows": done, "grader": _memory(proc.pid),
                                         "servers": [_memory(pid) for pid in servers],
                                         "fds": len(os.listdir(f"/proc/{proc.pid}/fd")),
                                         "seconds": time.perf_counter() - started}
                print(f"  ... row {done} after {m['seconds']:.0f} s: grader PSS {m['grader'][1] / 1024:.0f} MiB, "
                      f"servers {[round(p / 1024) for _, p in m['servers']]} MiB, fds {m['fds']}", flush=True)
        seconds = time.perf_counter() - started
        err = proc.stderr.read().decode(errors="replace")
        if proc.returncode != 0:
            raise SystemExit(f"the batch failed ({proc.returncode}): {err[-2000:]}")
        time.sleep(1)
        left_folders = sorted(p.name for p in work.iterdir())
        left_processes = _mentioning(str(work))

        print(f"soak: {args.submissions} submissions ({', '.join(f'{n} {k}' for k, n in _count(kinds).items())}), "
              f"--jobs {args.jobs}, --timeout {args.timeout:g}, "
              f"{'public cases only' if args.no_secret else 'hidden cases included'}: {seconds:.1f} s, "
              f"{seconds / args.submissions * 1000:.0f} ms per submission")
        print("  at row   grader RSS / PSS     fork servers RSS / PSS (each)          grader fds")
        for point in points:
            m = seen.get(point)
            if m is None:
                print(f"  {point:6d}   (finished before it could be sampled)")
                continue
            servers = ", ".join(f"{r / 1024:.0f} / {p / 1024:.0f}" for r, p in m["servers"]) or "-"
            print(f"  {m['rows']:6d}   {m['grader'][0] / 1024:6.0f} / {m['grader'][1] / 1024:4.0f} MiB   "
                  f"{servers:38s} {m['fds']:4d}")
        first, final = seen.get(points[0]), seen.get(points[-1])
        if first and final and first is not final:
            growth = lambda a, b: (b - a) / a if a else 0.0  # noqa: E731
            # RSS decides: a process's PSS also moves with how many others share its pages at that moment
            # (a fork server's sessions come and go), while it uses no more memory
            for i, kind in ((0, "RSS"), (1, "PSS")):
                g = growth(first["grader"][i], final["grader"][i])
                s = max((growth(a[i], b[i]) for a, b in zip(first["servers"], final["servers"])), default=0.0)
                verdict = ("flat" if max(g, s) < 0.10 else "GROWS") + "; target under 10%" if i == 0 else \
                    "for information: shared pages split between the processes sharing them"
                print(f"  {kind} growth from row {first['rows']} to row {final['rows']}: grader {g:+.1%}, "
                      f"fork servers {s:+.1%} at most  ({verdict})")
            print(f"  grader fds: {first['fds']} -> {final['fds']}")
        # the whole run, its end included (the gradebook's CSV and the summary of every report)
        print(f"  peak RSS of the batch from start to end (summary included): {usage.ru_maxrss / 1024:.0f} MiB; "
              f"the grader's at the first sample: {first['grader'][0] / 1024:.0f} MiB" if first else "")
        print(f"  left behind: {len(left_folders)} folders in the batch's TMPDIR {left_folders[:5]}, "
              f"{len(left_processes)} processes {left_processes[:3]}")

        sample = _sample(kinds, args.sample)
        differ = []
        for name in sample:
            alone = tmp / f"alone-{name}.json"
            handed_in = next(course.glob(f"{name}*"))  # its folder or its .ipynb
            subprocess.run([sys.executable, "-m", "grader", "grade", str(handed_in), "--quiet", "--out",
                            str(alone), "--timeout", str(args.timeout), "--config", str(ROOT / "grading.yaml")],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            mine = json.loads((out / f"{name}.json").read_text())
            theirs = json.loads(alone.read_text())
            if (mine["score"], _summary(mine)) != (theirs["score"], _summary(theirs)):
                differ.append(f"{name} ({kinds[name]}): batch {mine['score']}, alone {theirs['score']}")
        print(f"  graded alone again: {len(sample)} submissions ({', '.join(f'{n} {k}' for k, n in _count({s: kinds[s] for s in sample}).items())}), "
              f"{len(differ)} differ{': ' + '; '.join(differ) if differ else ' (the same gradebook)'}")


def _count(kinds: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind in kinds.values():
        out[kind] = out.get(kind, 0) + 1
    return out


def _sample(kinds: dict[str, str], size: int) -> list[str]:
    """Every kind, then evenly spread."""
    names = sorted(kinds)
    chosen = [next(n for n in names if kinds[n] == k) for k in sorted(set(kinds.values()))]
    rest = [n for n in names if n not in chosen]
    step = max(1, len(rest) // max(1, size - len(chosen)))
    chosen += rest[::step][:max(0, size - len(chosen))]
    return chosen


if __name__ == "__main__":
    main()
