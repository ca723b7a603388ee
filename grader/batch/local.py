"""Grading a batch on this machine: one pre-warmed fork server per job slot (grader.sandbox.slot), fed by
threads, in a work folder of this batch that is removed however the batch ends (and swept by the next one if
the batch was killed)."""

import contextlib
import gc
import os
import queue
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


from grader import phases
from grader.config import GradingConfig

from grader.batch.jobs import Entry, Result, finish_entry, run_entry


WORK_PREFIX = "grader-batch-"


def _started(pid: int) -> str:
    """When `pid` started (clock ticks since boot; '0' without /proc): a reused pid is another process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def make_work_folder() -> Path:
    """The batch's folder for its slots, named after this process (pid and start time), so that the next
    batch can tell when it outlived its owner (killed with SIGKILL) and remove it."""
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-{_started(os.getpid())}-"))
    work.chmod(0o711)  # a worker that dropped to `nobody` must reach the slots' folders (not list them)
    return work


def remove_stale_work(folder: Path | None = None) -> list[Path]:
    """Remove the slot folders of batches whose process is gone (this user's only); the folders removed."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*-*-*"):
        pid, started = path.name.removeprefix(WORK_PREFIX).split("-")[:2]
        try:
            mine = path.is_dir() and not path.is_symlink() and path.lstat().st_uid == os.getuid()
        except OSError:
            continue
        if not (mine and pid.isdigit() and started.isdigit()):
            continue
        alive = int(pid) == os.getpid() or (os.path.exists(f"/proc/{pid}") if os.path.isdir("/proc/self")
                                             else _exists(int(pid)))
        if alive and _started(int(pid)) == started:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


@contextlib.contextmanager
def _terminated_as_interrupt():
    """SIGTERM (a scheduler or `kill` stopping the batch) unwinds like Ctrl-C, so every slot is cleaned up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def grade_locally(todo: list[Entry], config: GradingConfig, secret: str | None, timeout: float, level: str,
                  jobs: int, execute=None) -> Iterator[Result]:
    """Grade on this machine with `jobs` fork servers; results in the order they finish.

    Each slot's thread only runs submissions (the worker's part); the caller's thread scores them,
    so a slot starts its next submission while the previous one is being scored.
    """
    from grader.pipeline import build_cases
    from grader.sandbox.slot import REPLY_WAIT, Slot

    work = make_work_folder()
    slots = []
    threads: list[threading.Thread] = []
    pending: queue.Queue = queue.Queue()
    thresholds = None
    stopping = threading.Event()  # set when the batch ends or is interrupted: no slot waits to hand over then
    try:
        # Servers first: their torch imports overlap with building the cases below.
        with phases.phase("start servers"):
            slots = Slot.open_all([work / f"slot-{i}" for i in range(max(1, min(jobs, len(todo))))], level, config)
        with phases.phase("build cases"):
            cases = build_cases(config, secret)
        import torch

        # Scoring's tensors are tiny: a second intra-op thread only spins against the fork servers (20x slower
        # matmuls under load). The references above were built like a single grade's; workers use one thread too.
        torch.set_num_threads(1)
        gc.freeze()  # torch's and the cases' objects stay: collections then skip them (many per batch)
        # Each report makes tens of thousands of small objects, few of them in cycles: collect ten times less
        # often (each collection then takes longer, not ten times: the same garbage, found in fewer passes).
        thresholds = gc.get_threshold()
        gc.set_threshold(thresholds[0] * 10, *thresholds[1:])
        for entry in todo:
            pending.put(entry)
        # Each slot may run one submission ahead of scoring, no more: a run holds its answers (about 1 MB), and
        # where scoring is slower (wrong answers to diagnose) an unbounded queue grew by 130 MB over 500.
        ran: queue.Queue = queue.Queue(maxsize=len(slots))

        def hand_over(item) -> None:
            while not stopping.is_set():
                try:
                    ran.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def work_slot(slot) -> None:
            try:
                while not stopping.is_set():
                    try:
                        entry = pending.get_nowait()
                    except queue.Empty:
                        return
                    hand_over(run_entry(entry, config, cases, timeout, slot=slot, execute=execute))
            finally:
                hand_over(None)  # this slot is done (or broke: its entry stays ungraded for the next run)

        threads = [threading.Thread(target=work_slot, args=(slot,), daemon=True) for slot in slots]
        for thread in threads:
            thread.start()
        running = len(threads)
        while running:
            with phases.phase("wait"):
                result = ran.get()
            if result is None:
                running -= 1
            else:
                yield finish_entry(result)
    finally:
        stopping.set()
        if thresholds is not None:
            gc.set_threshold(*thresholds)
        try:
            while True:  # interrupted: the slots take nothing more
                pending.get_nowait()
        except queue.Empty:
            pass
        for slot in slots:
            slot.close()  # its thread's session ends with it, and the slot starts no new server
        for thread in threads:
            thread.join(REPLY_WAIT)
        shutil.rmtree(work, ignore_errors=True)


# --- recording -----------------------------------------------------------------------------
