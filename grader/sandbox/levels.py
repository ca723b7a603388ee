"""How a worker process is started: isolation level, filesystem view, limits, environment.

Levels, strongest first (`auto` picks the first that works here):
- `bwrap`: bubblewrap with new PID, network (loopback only), IPC and UTS
  namespaces (and a user namespace when not root), no capabilities, an
  unprivileged user (when the grader runs as root, the worker drops to
  `nobody` before anything else), and a filesystem made of only the system
  libraries, the Python installation, a copy of the grader package, the
  inputs and the submission, all read-only, plus a private size-capped
  tmpfs as /tmp and as the working directory. The repository (solutions,
  grading.yaml), the grader's output and any secret file are not there.
- `unshare`: util-linux unshare; own PID, network, IPC, UTS and mount
  namespaces with a private /proc (the grader's processes and environment are
  out of sight), but every file stays visible.
- `process`: a plain subprocess; every file the grading user can read is
  visible, and the network too where the syscall filter is unavailable.
Every level applies the same rlimits, a scrubbed environment, a new session
(so the whole process group can be killed), a closed stdin, and on Linux the
worker's syscall filter (grader.sandbox.inside.confine: no new processes, no signals to
others, no sockets).
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from grader.errors import ConfigError

if TYPE_CHECKING:  # not at run time: grader.sandbox.prestart starts workers before the config models load
    from grader.config import Limits

PACKAGE = Path(__file__).resolve().parents[1]  # the `grader` package; only the worker's modules reach a worker
UNPRIVILEGED_UID = 65534                   # `nobody`: who the worker becomes when the grader is root
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache",
               "/etc/ld.so.conf", "/etc/ld.so.conf.d")

LEVEL_NOTES = {
    "bwrap": ("bubblewrap: own PID, network and IPC namespaces, an unprivileged user, no capabilities; "
              "a read-only view of the Python installation, the grader's worker code, the inputs and the "
              "submission only (not the solutions, grading.yaml, secrets or the report folder); private "
              "size-capped /tmp and working directory; no network"),
    "unshare": ("unshare: own PID, network, IPC and mount namespaces and a private /proc, but the filesystem "
                "is NOT hidden: the submission can read every file the grading user can"),
    "process": ("plain process with rlimits only: files are NOT hidden (the submission can read every file "
                "the grading user can) and the machine's processes are visible"),
}


LEVEL_HELP = {
    "bwrap": "it needs bubblewrap 0.8 or later (Debian/Ubuntu package `bubblewrap`) and user namespaces",
    "unshare": "it needs util-linux `unshare` and permission to create namespaces",
    "process": "it needs nothing but Python",
}


@dataclass(frozen=True)
class Mounts:
    """Host folders the worker needs; inside bwrap they appear at the same paths (and nothing else does)."""

    inputs: Path             # read-only: plan and case tensors
    submission: Path         # read-only: the student's files
    cwd: Path                # read-write: the private working directory (a size-capped tmpfs under bwrap)
    lib: Path | None = None  # read-only: a copy of the grader package, alone on PYTHONPATH (staged if None)


def prepare(mounts: Mounts) -> Mounts:
    """Stage the grader package if needed and open the folders to a worker that dropped to `nobody`."""
    if mounts.lib is None:
        mounts = replace(mounts, lib=stage_package(mounts.inputs.parent / "lib"))
    for folder in (mounts.inputs, mounts.submission, mounts.lib):
        make_readable(folder)
    mounts.cwd.chmod(0o1777)
    for folder in {m.parent for m in (mounts.inputs, mounts.submission, mounts.lib, mounts.cwd)}:
        folder.chmod(folder.stat().st_mode | 0o711)  # traverse, not list: the names are not secrets
    return mounts


# The worker's entry points (paths inside the package); everything they import at module level is staged,
# and every import of the worker-only modules' functions (they run nowhere else). Nothing else of the package is.
INSIDE = "sandbox/inside/"
WORKER_ENTRY = tuple(INSIDE + name for name in ("__main__.py", "session.py", "harness.py", "forkserver.py", "guard.py",
                                                "lecture_cells.py", "nbrun.py"))
WORKER_ONLY = tuple(INSIDE + name for name in ("__main__.py", "session.py", "harness.py", "forkserver.py"))
# The answer key and the grading side: staging fails loudly if the worker ever imports one of them.
NEVER_STAGED = ("course/cases.py", "course/registry.py", "course/exercises/", "scoring/", "feedback/", "pipeline.py",
                "release/", "cli.py", "batch/", "sandbox/runner.py", "sandbox/handle.py", "sandbox/outcome.py",
                "sandbox/warm.py", "sandbox/levels.py", "sandbox/slot.py", "config.py", "report.py")


def module_file(dotted: str) -> str | None:
    """`grader.a.b` as a path inside the package (`a/b.py` or `a/b/__init__.py`); None if it is no module."""
    parts = dotted.split(".")[1:]
    if (PACKAGE.joinpath(*parts) / "__init__.py").is_file():
        return "/".join([*parts, "__init__.py"])
    if parts and PACKAGE.joinpath(*parts[:-1], parts[-1] + ".py").is_file():
        return "/".join(parts) + ".py"
    return None


def _with_packages(path: str) -> set[str]:
    """A module and the `__init__.py` of every package above it (Python imports those first)."""
    parts = path.split("/")[:-1]
    return {path} | {"/".join([*parts[:i], "__init__.py"]) for i in range(len(parts) + 1)}


def _grader_imports(path: Path, everywhere: bool) -> set[str]:
    """The grader modules a file imports (paths in the package): at module level, or (`everywhere`) also in functions."""
    import ast

    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if everywhere else (n for top in tree.body for n in ast.walk(top)
                                               if not isinstance(top, (ast.FunctionDef, ast.ClassDef)))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "grader":
            for alias in node.names:  # `from grader.x import y`: y is a module of its own, or a name in x
                found.add(module_file(f"{node.module}.{alias.name}") or module_file(node.module))
        elif isinstance(node, ast.Import):
            found.update(module_file(a.name) for a in node.names if a.name.startswith("grader."))
    return {f for name in found if name for f in _with_packages(name)}


@functools.cache
def worker_modules() -> tuple[str, ...]:
    """The import closure of the worker's entry points, as paths inside the package.

    Parsing every module costs a fifth of a second before a grade's worker can start, so the closure
    is kept in the user's private cache folder (grader.course.refcache), keyed by every source of the
    package and by the rules above, and checked against NEVER_STAGED again when read.
    """
    import hashlib

    from grader.course import refcache

    key = hashlib.sha256(repr((WORKER_ENTRY, WORKER_ONLY, NEVER_STAGED)).encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        key.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    memo = f"worker-modules.{key.hexdigest()[:32]}"
    names = refcache.read_memo(memo)
    if isinstance(names, list) and all(isinstance(n, str) and n.endswith(".py") and not n.startswith(NEVER_STAGED)
                                       and not n.startswith("/") and ".." not in n and (PACKAGE / n).is_file()
                                       for n in names):
        return tuple(names)
    names = _import_closure()
    refcache.write_memo(memo, list(names))
    return names


def _import_closure() -> tuple[str, ...]:
    seen, stack = set(), [f for entry in WORKER_ENTRY for f in _with_packages(entry)]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        if name.startswith(NEVER_STAGED):
            dotted = "grader." + name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            raise RuntimeError(f"{dotted} is the grading side or the answer key and must never reach the "
                               "sandbox; the worker must not import it")
        seen.add(name)
        stack.extend(_grader_imports(PACKAGE / name, everywhere=name in WORKER_ONLY))
    return tuple(sorted(seen))


def stage_package(lib: Path) -> Path:
    """Copy the worker's modules of the grader package (only those) into `lib/grader`, readable by `nobody`."""
    target = lib / "grader"
    for name in worker_modules():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE / name, target / name)
    make_readable(lib)
    return lib


def make_readable(folder: Path) -> None:
    """World-readable files and folders, so a worker that dropped to `nobody` can read them."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


def _python_dirs() -> list[Path]:
    """The Python installation and its packages; never the folder that holds the grader's sources."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(Path(sysconfig.get_paths()[key]))
    for entry in sys.path:  # packages installed elsewhere (but not the repository on sys.path)
        if entry.endswith(("site-packages", "dist-packages")) and Path(entry).is_dir():
            paths.add(Path(entry))
    repo = PACKAGE.parent.resolve()
    kept = set()
    for path in paths:
        path = path.resolve()
        if path == repo or path in repo.parents:
            continue  # would expose the repository; the installation lives below it anyway
        kept.add(path)
    # Drop paths already inside another kept path.
    return sorted(p for p in kept if not any(q != p and q in p.parents for q in kept))


def shared_dirs() -> list[Path]:
    """The host folders every bubblewrap worker sees (read-only), whatever it grades."""
    return [Path(d) for d in SYSTEM_DIRS if os.path.exists(d)] + _python_dirs()


def drops_root(level: str) -> bool:
    """Whether a worker at `level` gives up root for an unprivileged user (`--drop-to`)."""
    return _needs_drop(level)


def _needs_drop(level: str) -> bool:
    """Whether the worker must give up root itself (bwrap as root maps no other user)."""
    if os.geteuid() != 0:
        return False
    if level == "bwrap":
        return True
    # Without a private mount namespace, `nobody` must be able to reach the interpreter.
    return all(_world_readable(p) for p in (Path(os.path.realpath(sys.executable)), *_python_dirs()))


def _world_readable(path: Path) -> bool:
    try:
        for part in [path, *path.parents]:
            mode = part.stat().st_mode
            if not mode & 0o001 or (part == path and not mode & 0o004):
                return False
    except OSError:
        return False
    return True


def _bwrap(argv: list[str], mounts: Mounts | None, limits: Limits) -> list[str] | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    if os.geteuid() == 0:
        # Root: no user namespace (it would map root to root); the worker drops to `nobody` itself,
        # for which it keeps only the two capabilities that needs.
        cmd = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd = [bwrap, "--unshare-all", "--unshare-user", "--cap-drop", "ALL"]
    cmd += ["--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
    size = str(limits.file_size_mb << 20)
    cmd += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    system = [Path(d) for d in SYSTEM_DIRS if os.path.exists(d)]
    binds = [(d, d) for d in system]
    binds += [(p, p) for p in _python_dirs() if not any(s == p or s in p.parents for s in system)]
    if mounts is not None:
        binds += [(m, m) for m in (mounts.lib, mounts.inputs, mounts.submission)]
    # bwrap creates missing parent folders for root only: make them traversable for `nobody`.
    for folder in sorted({str(p) for _, dest in binds for p in dest.parents if str(p) != "/"}):
        cmd += ["--perms", "0755", "--dir", folder]
    for source, dest in binds:
        cmd += ["--ro-bind", str(source), str(dest)]
    if mounts is not None:
        cmd += ["--perms", "1777", "--size", size, "--tmpfs", str(mounts.cwd), "--chdir", str(mounts.cwd)]
    return cmd + ["--", *argv]


def _unshare(argv: list[str]) -> list[str] | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [unshare, *user, "--pid", "--fork", "--kill-child", "--net", "--ipc", "--uts", "--mount",
            "--mount-proc", "--propagation", "private", "--", *argv]


def _wrap(level: str, argv: list[str], mounts: Mounts | None, limits: Limits) -> list[str] | None:
    if level == "bwrap":
        return _bwrap(argv, mounts, limits)
    if level == "unshare":
        return _unshare(argv)
    return argv


def _worker_argv(level: str, args: list[str], uid: int | None = None) -> list[str]:
    drop = ["--drop-to", str(uid or UNPRIVILEGED_UID)] if _needs_drop(level) else []
    return [sys.executable, "-s", "-m", "grader.sandbox.inside", *args, *drop]


@functools.cache
def level_works(level: str) -> bool:
    """Whether this machine can start a worker at `level` (checked once per run)."""
    import tempfile

    from grader.config import Limits

    with tempfile.TemporaryDirectory(prefix="grader-probe-") as tmp:
        folders = [Path(tmp) / name for name in ("inputs", "submission", "cwd")]
        for folder in folders:
            folder.mkdir()
        mounts = prepare(Mounts(*folders))
        cmd = _wrap(level, _worker_argv(level, ["-", "--probe"]), mounts, Limits())
        if cmd is None:
            return False
        try:
            return subprocess.run(cmd, capture_output=True, timeout=30, cwd=mounts.cwd, stdin=subprocess.DEVNULL,
                                  env=worker_env(mounts),
                                  preexec_fn=functools.partial(_set_limits, Limits())).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def choose_level(requested: str) -> str:
    """The level to use: `requested`, or with `auto` the strongest that works here."""
    if requested != "auto":
        if not level_works(requested):
            raise ConfigError(f"isolation level {requested!r} does not work on this machine "
                              f"({LEVEL_HELP[requested]}); use --isolation auto")
        return requested
    for level in ("bwrap", "unshare", "process"):
        if level_works(level):
            return level
    return "process"


def describe(level: str) -> str:
    note = LEVEL_NOTES[level]
    if level != "bwrap" and os.geteuid() == 0 and not _needs_drop(level):
        note += "; it runs as root (the Python installation is not readable by an unprivileged user)"
    return note


def _set_limits(limits: Limits, join=None, nproc: int | None = None) -> None:
    """Runs in the child between fork and exec; every process below inherits the caps (and the cgroup `join`s)."""
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
    if nproc is not None:  # counts the tasks of the user the worker becomes (root itself is exempt)
        cap(resource.RLIMIT_NPROC, nproc)
    if join is not None:
        try:
            join()
        except OSError:
            pass  # the caller checks where the process ended up


def worker_env(mounts: Mounts) -> dict[str, str]:
    """A scrubbed environment: nothing of the grader's (no secrets, no tokens)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(mounts.cwd),
        "TMPDIR": str(mounts.cwd),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(mounts.lib),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # malloc asks for 2 MiB pages as torch's import fills the heap: a fork server's page collapse
        # (forkserver.collapse_huge_pages) then has a third as much to copy, and forks are as cheap.
        "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
        **({"OBJC_DISABLE_INITIALIZE_FORK_SAFETY": "YES"} if sys.platform == "darwin" else {}),  # fork per exercise
    }


def start_worker(level: str, limits: Limits, mounts: Mounts, worker_args: list[str],
                 pass_fds: tuple[int, ...], join=None, uid: int | None = None,
                 nproc: int | None = None) -> subprocess.Popen:
    """Start `python -m grader.sandbox.inside WORKER_ARGS` at `level`.

    Batch slots pass `join` (enter a cgroup first: grader.sandbox.cgroups), or, without one, a `uid` of their
    own to drop to (when root) with an `nproc` cap on its tasks.
    """
    mounts = prepare(mounts)
    cmd = _wrap(level, _worker_argv(level, worker_args, uid), mounts, limits)
    if cmd is None:
        raise RuntimeError(f"isolation level {level!r} is not available on this machine")
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=mounts.cwd, env=worker_env(mounts), pass_fds=pass_fds,
        start_new_session=True, preexec_fn=functools.partial(_set_limits, limits, join, nproc),
    )
