"""`grader batch --scheduler tcp://HOST:PORT`: the batch on an existing Dask distributed cluster.

The instructor's machine builds the cases once (one task the workers fetch
from each other, which the scheduler can run again if every worker holding
them is lost), reads every submission itself (so one that cannot be read
never leaves it), and sends each by value as a task; results come back as
report JSON and go into the same gradebook as a local run's. A task whose
worker dies is graded again elsewhere by Dask. On a Dask worker a task grades
with the same code and the same isolation as locally: each worker process
keeps one fork server (grader.sandbox.slot), started by its first task, reused by
the next ones, and stopped when the process exits; the isolation level is
chosen on the worker's machine and recorded in each report. Dask is an
optional extra (`pip install 'backprop-ninja-grader[dask]'`): the workers
need the same grader version (checked) and torch, bubblewrap installed too.

What travels: submissions' sources, the config and the cases, hidden ones
included (their inputs and references, never the secret). Run the cluster
on machines you trust with them.
"""

import atexit
import fcntl
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from grader import __version__
from grader.config import ConfigError

_lock = threading.Lock()
_slot = None  # this worker process's fork server: (key, Slot, folder, lock)
PREFIX = "grader-dask-"


def _worker_slot(config, isolation: str):
    """This Dask worker process's fork server, started on first use (and again for another config)."""
    global _slot
    from grader.sandbox.levels import choose_level
    from grader.sandbox.slot import Slot

    key = (config.fingerprint(), isolation)
    if _slot is not None and _slot[0] != key:
        _close_slot()
    if _slot is None:
        level = choose_level(isolation)  # first: a worker without that level leaves no folder behind
        _sweep()
        folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        folder.chmod(0o711)  # a worker that dropped to `nobody` must reach the slot's folders
        lock = _hold(folder)
        try:
            _slot = (key, Slot(folder / "slot", level, config), folder, lock)
        except BaseException:
            os.close(lock)
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return _slot[1]


def _hold(folder: Path) -> int:
    """A lock on `folder` that this process holds until it ends: no other worker sweeps a live one's folder."""
    fd = os.open(folder / ".lock-new", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(folder / ".lock-new", folder / "lock")  # visible only once held
    return fd


def _sweep() -> None:
    """Remove the folders of this machine's worker processes that died without cleaning up (SIGKILL, OOM)."""
    for old in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            fd = os.open(old / "lock", os.O_RDWR)
        except OSError:
            continue  # not (yet) a worker's of this user
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # refused while its worker lives
            shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
        finally:
            os.close(fd)


def _close_slot() -> None:
    global _slot
    if _slot is not None:
        _, slot, folder, lock = _slot
        _slot = None
        slot.close()
        shutil.rmtree(folder, ignore_errors=True)
        os.close(lock)


atexit.register(_close_slot)  # a worker process stopped by a signal does not get here: the next one sweeps


def grade_task(entry, submission, config, cases, timeout: float, isolation: str, execute,
               version: str = __version__) -> tuple[str, str, str]:
    """On a Dask worker: grade one submission; (status, report JSON or "", message).

    `version`: the grader's on the machine running the batch; a worker with another one grades nothing.
    """
    from grader.batch.jobs import grade_entry

    if version != __version__:
        raise RuntimeError(f"this worker has grader {__version__} installed and the batch runs grader {version}: "
                           "install the same version on every worker")
    with _lock:  # one session at a time per worker process, whatever its thread count
        slot = _worker_slot(config, isolation)
        result = grade_entry(entry, config, cases, timeout, slot=slot, execute=execute, submission=submission)
    return result.status, result.report.model_dump_json() if result.report else "", result.message


def _given(value):
    return value


def _reachable(address: str) -> None:
    """Fail fast (not after Dask's long connect timeout) when nothing listens at a tcp:// address."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        socket.create_connection((parts.hostname, parts.port), timeout=10).close()


def grade_on_dask(todo, config, secret, timeout: float, isolation: str, scheduler: str,
                  execute=None) -> Iterator:
    """Grade `todo` on the cluster at `scheduler`; batch Results in the order they finish."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise ConfigError("--scheduler needs Dask: pip install 'backprop-ninja-grader[dask]' "
                          "(dask and distributed)") from None
    from grader.batch.jobs import Result
    from grader.pipeline import build_cases
    from grader.report import Report
    from grader.submission.load import SubmissionError, load_submission

    try:
        _reachable(scheduler)
        client = Client(scheduler, timeout=30)
    except (OSError, TimeoutError, ValueError) as err:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
    with client:
        cases = build_cases(config, secret)
        run = uuid.uuid4().hex[:12]  # task keys of their own: a scheduler shares results between equal keys
        # A task that returns the cases rather than scattered data: were every worker that holds them
        # lost, the scheduler would run it again (scattered data would be gone, and the rest of the batch with it).
        shared = client.submit(_given, cases, pure=False, key=f"cases-{run}")
        futures = {}
        for entry in todo:
            try:
                submission = load_submission(entry.path)
            except SubmissionError as err:
                yield Result(entry=entry, status="unreadable", message=str(err)[:1000])
                continue
            future = client.submit(grade_task, entry, submission, config, shared, timeout, isolation, execute,
                                   __version__, pure=False, key=f"grade-{run}-{len(futures)}-{entry.content_hash[:12]}")
            futures[future] = entry
        for future in as_completed(futures):
            entry = futures.pop(future)
            try:
                status, report_json, message = future.result()
                report = Report.model_validate_json(report_json) if report_json else None
                result = Result(entry=entry, status=status, report=report, message=message)
            except Exception as err:  # noqa: BLE001 - a lost worker, a task that failed: that row only
                message = f"the Dask task failed: {type(err).__name__}: {err}"
                result = Result(entry=entry, status="error", message=message[:1000])
            # Let go of its result at once: were the worker holding it lost later, the scheduler would grade
            # it again for nothing (and a course's reports would pile up in the workers' memory).
            future.release()
            yield result
