"""`grader batch --scheduler tcp://HOST:PORT`: the batch on an existing Dask distributed cluster.

The instructor's machine builds the cases once and broadcasts them to the
workers, reads every submission itself (so one that cannot be read never
leaves it), and sends each as a task; results come back as report JSON and
go into the same gradebook as a local run's. On a Dask worker a task grades
with the same code and the same isolation as locally: each worker process
keeps one fork server (grader.sandbox.slot), started by its first task, reused by
the next ones, and stopped when the process exits. Dask is an optional
extra (`pip install 'backprop-ninja-grader[dask]'`): the workers need the
grader (and torch, bubblewrap) installed too.

What travels: submissions' sources, the config and the cases, hidden ones
included (their inputs and references, never the secret). Run the cluster
on machines you trust with them.
"""

import atexit
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from grader.config import ConfigError

_lock = threading.Lock()
_slot = None  # this worker process's fork server: (key, Slot, folder)


def _worker_slot(config, isolation: str):
    """This Dask worker process's fork server, started on first use (and again for another config)."""
    global _slot
    from grader.sandbox.levels import choose_level
    from grader.sandbox.slot import Slot

    key = (config.fingerprint(), isolation)
    if _slot is not None and _slot[0] != key:
        _close_slot()
    if _slot is None:
        folder = Path(tempfile.mkdtemp(prefix="grader-dask-"))
        folder.chmod(0o711)  # a worker that dropped to `nobody` must reach the slot's folders
        _slot = (key, Slot(folder / "slot", choose_level(isolation), config), folder)
    return _slot[1]


@atexit.register
def _close_slot() -> None:
    global _slot
    if _slot is not None:
        _, slot, folder = _slot
        _slot = None
        slot.close()
        shutil.rmtree(folder, ignore_errors=True)


def grade_task(entry, submission, config, cases, timeout: float, isolation: str, execute) -> tuple[str, str, str]:
    """On a Dask worker: grade one submission; (status, report JSON or "", message)."""
    from grader.batch.run import grade_entry

    with _lock:  # one session at a time per worker process, whatever its thread count
        slot = _worker_slot(config, isolation)
        result = grade_entry(entry, config, cases, timeout, slot=slot, execute=execute, submission=submission)
    return result.status, result.report.model_dump_json() if result.report else "", result.message


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
    from grader.batch.run import Result
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
        [shared] = client.scatter([cases], broadcast=True)
        futures = {}
        for entry in todo:
            try:
                submission = load_submission(entry.path)
            except SubmissionError as err:
                yield Result(entry=entry, status="unreadable", message=str(err)[:1000])
                continue
            future = client.submit(grade_task, entry, submission, config, shared, timeout, isolation, execute,
                                   pure=False, key=f"grade-{entry.content_hash[:12]}-{len(futures)}")
            futures[future] = entry
        for future in as_completed(futures):
            entry = futures[future]
            try:
                status, report_json, message = future.result()
                report = Report.model_validate_json(report_json) if report_json else None
                yield Result(entry=entry, status=status, report=report, message=message)
            except Exception as err:  # noqa: BLE001 - a lost worker, a task that failed: that row only
                message = f"the Dask task failed: {type(err).__name__}: {err}"
                yield Result(entry=entry, status="error", message=message[:1000])
