"""`grader grade`'s worker, started on the interpreter's first lines (grader/__main__.py).

A grade's floor is its worker's torch import, and the grading process needs about a tenth of a second to import
its config models (pydantic) before it could start the worker itself. So the entry point starts one at once, in a
fresh workspace, with the isolation level and limits this user's last grade started its worker with: a memo in the
private cache folder (grader.course.refcache; none with --no-cache). The grade adopts that worker only if the level
and limits are exactly those it would start now (`take`, from grader.pipeline); otherwise it is killed and its
workspace removed before anything is written into it, and the grade starts its own. A memo can therefore only make
a grade faster, never start its worker differently. The worker itself waits for its go, as any early worker does.

Stdlib, grader.sandbox.handle (and levels) and grader.course.refcache only: nothing here may import the config
models.
"""

import atexit
import os
import shutil
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

from grader.phases import mark

MEMO = "worker-launch"


@dataclass
class Prestarted:
    workdir: Path
    mounts: object   # grader.sandbox.levels.Mounts
    worker: object   # grader.sandbox.handle.WorkerProcess
    level: str
    limits: dict


_started: list[Prestarted] = []


def _cache_folder(argv: list[str]) -> Path | None:
    """The folder `grader grade ARGV` keeps its memos in (as grader.cli reads it), or None (--no-cache)."""
    from grader.course import refcache

    folder = refcache.default_folder()
    for i, arg in enumerate(argv):
        if arg == "--no-cache":
            return None
        if arg == "--cache-dir" and i + 1 < len(argv):
            folder = Path(argv[i + 1])
        elif arg.startswith("--cache-dir="):
            folder = Path(arg.split("=", 1)[1])
    return folder


def start(argv: list[str]) -> None:
    """For `grader grade ...` with a memo: start the worker now. Any failure only means no prestart."""
    if argv[:1] != ["grade"] or os.environ.get("GRADER_NO_PRESTART"):
        return
    try:
        from grader.course import refcache

        folder = _cache_folder(argv[1:])
        if folder is None:
            return
        refcache.memos_in(folder)
        memo = refcache.read_memo(MEMO)
        if not (isinstance(memo, dict) and isinstance(memo.get("level"), str) and isinstance(memo.get("limits"), dict)
                and all(isinstance(v, int) for v in memo["limits"].values())):
            return
        from grader.sandbox.handle import WorkerProcess, workspace

        workdir = Path(tempfile.mkdtemp(prefix="grader-"))
        atexit.register(discard)  # a grade that never adopts it (an error, --help): gone with the process
        mounts = workspace(workdir, workdir / "submission")
        entry = Prestarted(workdir, mounts, None, memo["level"], memo["limits"])
        _started.append(entry)
        entry.worker = WorkerProcess(memo["level"], types.SimpleNamespace(**memo["limits"]), mounts,
                                     mounts.inputs / "plan-1.json")
        mark("worker prestarted")
    except Exception:  # noqa: BLE001 - a memo of another version, a level that cannot start here: no prestart
        discard()


def take(level: str, limits: dict) -> Prestarted | None:
    """The prestarted worker if it was started at exactly `level` with exactly `limits`; else None (killed)."""
    entry = _started.pop() if _started else None
    if entry is not None and entry.worker is not None and entry.level == level and entry.limits == limits:
        return entry
    if entry is not None:
        _remove(entry)
    return None


def remember(level: str, limits: dict) -> None:
    """What the next grade should prestart with (written only when it changed)."""
    from grader.course import refcache

    value = {"level": level, "limits": limits}
    if refcache.read_memo(MEMO) != value:
        refcache.write_memo(MEMO, value)


def discard() -> None:
    """Kill a prestarted worker nobody adopted, and remove its workspace."""
    while _started:
        _remove(_started.pop())


def _remove(entry: Prestarted) -> None:
    if entry.worker is not None:
        entry.worker.kill()
    shutil.rmtree(entry.workdir, ignore_errors=True)
