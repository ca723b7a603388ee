"""How a worker process is started: isolation level, limits, environment.

Levels, strongest first:
- `bwrap`: bubblewrap; new user, network, PID, IPC and mount namespaces, a
  read-only view of only the Python installation, the grader package, the
  inputs and the submission, and a private tmpfs.
- `unshare`: util-linux unshare; new user, network, PID and IPC namespaces,
  but the whole filesystem stays visible.
- `process`: a plain subprocess with rlimits; the submission can see every
  file the grading user can.
All levels apply the same rlimits, a scrubbed environment, a new session
(so the whole process group can be killed) and a closed stdin.
"""

import functools
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from grader.config import Limits

GRADER_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds the `grader` package

LEVEL_NOTES = {
    "bwrap": "bubblewrap: own namespaces, read-only view of the Python installation and the submission only, no network",
    "unshare": "unshare: own user, network, PID and IPC namespaces; the filesystem is NOT hidden from the submission",
    "process": "plain process with rlimits only: the submission can read every file the grading user can, and use the network",
}


@dataclass(frozen=True)
class Mounts:
    """Host paths the worker needs; inside bwrap they appear at the same paths."""

    inputs: Path      # read-only: plan and case tensors
    submission: Path  # read-only: the student's files
    cwd: Path         # read-write: the private working directory


def _python_prefixes() -> list[Path]:
    """Every directory the worker's interpreter and its packages live in."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), GRADER_ROOT,
             Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"]),
             Path(sysconfig.get_paths()["platlib"]), Path(os.path.realpath(sys.executable)).parent}
    for entry in sys.path:
        if entry and Path(entry).is_dir():
            paths.add(Path(entry))
    return sorted({p.resolve() for p in paths})


@functools.cache
def level_works(level: str) -> bool:
    """Whether this machine can start a process at `level` (checked once per run)."""
    if level == "process":
        return True
    probe = _wrap(level, [sys.executable, "-c", "pass"], None)
    if probe is None:
        return False
    try:
        return subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def choose_level(requested: str) -> str:
    if requested != "auto":
        return requested
    for level in ("bwrap", "unshare", "process"):
        if level_works(level):
            return level
    return "process"


def _wrap(level: str, argv: list[str], mounts: Mounts | None) -> list[str] | None:
    if level == "bwrap":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            return None
        cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/var/tmp"]
        for sysdir in ("/usr", "/lib", "/lib64", "/bin", "/etc/alternatives", "/etc/ld.so.cache"):
            if os.path.exists(sysdir):
                cmd += ["--ro-bind", sysdir, sysdir]
        for prefix in _python_prefixes():
            cmd += ["--ro-bind", str(prefix), str(prefix)]
        if mounts is not None:
            cmd += ["--ro-bind", str(mounts.inputs), str(mounts.inputs),
                    "--ro-bind", str(mounts.submission), str(mounts.submission),
                    "--bind", str(mounts.cwd), str(mounts.cwd), "--chdir", str(mounts.cwd)]
        return cmd + ["--", *argv]
    if level == "unshare":
        unshare = shutil.which("unshare")
        if unshare is None:
            return None
        return [unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--ipc",
                "--kill-child", "--", *argv]
    return argv


def _set_limits(limits: Limits) -> None:
    """Runs in the child between fork and exec."""
    def cap(which, value):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    cap(resource.RLIMIT_AS, limits.memory_mb << 20)
    cap(resource.RLIMIT_CPU, limits.cpu_seconds)
    cap(resource.RLIMIT_FSIZE, limits.file_size_mb << 20)
    cap(resource.RLIMIT_NOFILE, limits.open_files)
    cap(resource.RLIMIT_CORE, 0)


def worker_env(cwd: Path) -> dict[str, str]:
    """A scrubbed environment: nothing of the grader's (no secrets, no tokens)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
        "TMPDIR": str(cwd),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(GRADER_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def start_worker(level: str, limits: Limits, mounts: Mounts, worker_args: list[str],
                 pass_fds: tuple[int, ...]) -> subprocess.Popen:
    argv = [sys.executable, "-s", "-m", "grader.worker", *worker_args]
    cmd = _wrap(level, argv, mounts)
    if cmd is None:
        raise RuntimeError(f"isolation level {level!r} is not available on this machine")
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=mounts.cwd, env=worker_env(mounts.cwd), pass_fds=pass_fds,
        start_new_session=True, preexec_fn=functools.partial(_set_limits, limits),
    )
