"""A Dask cluster of separate processes, for tests/batch/test_dask_cluster.py (run as a script, not collected).

    python dask_cluster.py FOLDER HIDDEN NWORKERS

starts `dask scheduler` on 127.0.0.1 (a free port) and NWORKERS `dask worker --nworkers 1 --nthreads 1`
processes, each in a bubblewrap view of the filesystem where HIDDEN (the test's folder, which holds
the submissions) is an empty tmpfs with only that worker's own folder FOLDER/wN in it: a worker that
tried to read a submission from the shared filesystem would find nothing. It prints one JSON line
{"scheduler": address, "workers": {name: pid}}, then obeys lines on stdin:

    kill NAME   SIGKILL that worker's whole process group (its nanny and worker process; the
                sandboxes die with their parent); answers {"killed": NAME, "left": [...]}, the
                processes of the killed worker still alive after a bounded wait (none, if all is well)

and at end of input stops everything (SIGTERM, then SIGKILL) and prints {"left": [...]}. It is a
child subreaper, so no descendant can escape to init: `left` lists every descendant still alive.
It and every child have PR_SET_PDEATHSIG, so nothing outlives the test process even if it is killed.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
DASK = str(Path(sys.executable).with_name("dask"))


def _die_with_us() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _descendants(root: int) -> list[int]:
    """Live (not zombie) descendants of `root`."""
    parent, alive = {}, set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(entry)] = int(fields[1])
        if fields[0] != "Z":
            alive.add(int(entry))
    found = []
    for pid in alive:
        p = pid
        while p in parent and p not in (root, 0, 1):
            p = parent[p]
        if p == root and pid != root:
            found.append(pid)
    return sorted(found)


def _reap() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _wait_gone(pids, seconds: float) -> list[int]:
    """Reap and wait until none of `pids` is alive; those still alive after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        _reap()
        left = [pid for pid in pids if pid in _descendants(os.getpid())]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _start(cmd, cwd: Path, env=None) -> subprocess.Popen:
    with open(cwd / "log.txt", "wb") as log:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, start_new_session=True, preexec_fn=_die_with_us)


def main(folder: Path, hidden: Path, nworkers: int) -> None:
    _die_with_us()  # the test process gone (even killed), this one goes, and with it every child
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    procs: dict[str, subprocess.Popen] = {}
    try:
        (folder / "scheduler").mkdir(parents=True)
        info = folder / "scheduler" / "scheduler.json"
        procs["scheduler"] = _start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                     "--scheduler-file", str(info)], folder / "scheduler")
        deadline = time.monotonic() + 60
        while not info.is_file() or not info.read_text().strip():
            if time.monotonic() > deadline or procs["scheduler"].poll() is not None:
                raise RuntimeError("the scheduler did not start: " + (folder / "scheduler" / "log.txt").read_text())
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for i in range(nworkers):
            name = f"w{i}"
            own = folder / name
            own.mkdir()
            view = ["bwrap", "--dev-bind", "/", "/", "--tmpfs", str(hidden), "--bind", str(own), str(own),
                    "--chdir", str(own), "--die-with-parent", "--"]
            procs[name] = _start(view + [DASK, "worker", address, "--name", name, "--nworkers", "1", "--nthreads",
                                         "1", "--host", "127.0.0.1", "--no-dashboard", "--local-directory",
                                         str(own), "--death-timeout", "60", "--preload", "torch"],
                                 own, env={**os.environ, "TMPDIR": str(own)})
        print(json.dumps({"scheduler": address, "workers": {n: p.pid for n, p in procs.items() if n != "scheduler"}}),
              flush=True)
        for line in sys.stdin:
            verb, name = line.split()
            assert verb == "kill", line
            doomed = [procs[name].pid] + _descendants(procs[name].pid)
            os.killpg(procs[name].pid, signal.SIGKILL)
            procs[name].wait(timeout=10)
            print(json.dumps({"killed": name, "pids": doomed, "left": _wait_gone(doomed, 20)}), flush=True)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        everyone = _descendants(os.getpid())
        left = _wait_gone(everyone, 20)
        for pid in left:  # the report below says they were there; do not leave them behind either way
            os.kill(pid, signal.SIGKILL)
        _wait_gone(left, 10)
        print(json.dumps({"left": left}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
