"""`grader batch DIR --out OUTDIR`: a whole course, one submission per entry of DIR.

Every entry (a folder, a .zip or a .ipynb) is one submission, named by its
entry name (without .zip/.ipynb). The cases and their references are built
once per run and shared by every submission; each job slot is a pre-warmed
fork server (grader.sandbox.slot), so a submission costs a fork, not a torch import.
Each result is written as it arrives: OUTDIR/<name>.json (the report
`grader grade` writes) and its gradebook row (grader.batch.gradebook), committed at
once. At the end come OUTDIR/gradebook.csv and the instructor summary
(grader.batch.summary). A rerun skips every submission whose content, config,
cases and grader version are unchanged.
"""

import contextlib
import csv
import gc
import hashlib
import json
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from grader import __version__, phases
from grader.config import ConfigError, GradingConfig
from grader.batch.gradebook import Gradebook, Row, gradebook_csv
from grader.report import Report, write_atomically
from grader.safe_text import valid

KINDS = (".zip", ".ipynb")
TAMPERED = ("not graded: while it ran, its grading sandbox's own process was changed ({}), and again when it was "
            "graded a second time in a fresh sandbox; a submission must not touch the grader's processes")


class Entry(BaseModel):
    """One submission of the batch."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: Path
    content_hash: str
    submitted_at: str | None = None


class Result(BaseModel):
    """What grading one entry gave: a report (or the run to score), or why there is none."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    entry: Entry
    status: str  # graded | unreadable | error
    report: Report | None = None
    run: Any = None  # grader.pipeline.Run, between running and scoring
    message: str = ""


class BatchResult(BaseModel):
    total: int = 0
    graded: int = 0
    skipped: int = 0
    unreadable: int = 0
    errors: int = 0
    ignored: list[str] = []
    seconds: float = 0.0
    phases: dict[str, float] = {}  # seconds per phase, summed over threads (grader.phases)
    gradebook: Path | None = None
    summary: Path | None = None


# --- the entries ---------------------------------------------------------------------------

def content_hash(path: Path) -> str:
    """What a submission's grade depends on: a file's bytes, or a folder's .py files (as the loader reads them).

    Read within the loader's bounds and never through a link: past a bound, what the loader will
    refuse (a size, a link's target, the bound's message) stands for the content.
    """
    from grader.submission.bounded import MAX_ZIP_BYTES, InputError, open_regular, read_regular, walk_folder
    from grader.submission.cells import MAX_NOTEBOOK_BYTES
    from grader.submission.load import MAX_FILE_BYTES

    h = hashlib.sha256()
    try:
        if path.is_symlink():
            h.update(b"link\0" + os.fsencode(os.readlink(path)))
        elif path.is_file():
            fh, info = open_regular(path, path.name)
            with fh:
                if info.st_size > max(MAX_ZIP_BYTES, MAX_NOTEBOOK_BYTES):
                    h.update(f"too large\0{info.st_size}\0{info.st_mtime_ns}".encode())
                else:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
        else:
            for rel, size in walk_folder(path, ".py")[0]:
                data = read_regular(path / rel, MAX_FILE_BYTES, rel.name) if size <= MAX_FILE_BYTES else \
                    f"too large\0{size}".encode()
                h.update(rel.as_posix().encode("utf-8", "surrogateescape") + b"\0" + data + b"\0")
    except (InputError, OSError) as err:
        h.update(f"unreadable\0{err}".encode("utf-8", "backslashreplace"))
    return h.hexdigest()


def _mtime(path: Path) -> float:
    """A file's modification time; for a folder, the newest of its files' (links are not followed)."""
    from grader.submission.bounded import InputError, walk_folder

    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        try:
            for rel, _ in walk_folder(path, "")[0]:
                newest = max(newest, (path / rel).lstat().st_mtime)
        except (InputError, OSError):
            pass
    return newest


def read_timestamps(path: Path) -> dict[str, str]:
    """A CSV of submission times: a `name` column (entry or submission name) and a `submitted_at` column (ISO 8601)."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        raise ConfigError(f"cannot read the timestamps file {path}: {err.strerror}") from None
    times = {}
    for line, row in enumerate(rows, start=2):
        name, when = (row.get("name") or "").strip(), (row.get("submitted_at") or "").strip()
        if not name or not when:
            raise ConfigError(f"{path} line {line}: needs `name` and `submitted_at` columns")
        try:
            stamp = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{path} line {line}: {when!r} is not an ISO 8601 time") from None
        times[name] = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).isoformat()
    return times


def discover(directory: Path, out: Path, timestamps: dict[str, str] | None = None) -> tuple[list[Entry], list[str]]:
    """The submissions in `directory` (sorted by name) and the entries ignored."""
    if not directory.is_dir():
        raise ConfigError(f"not a folder: {directory}")
    chosen, ignored = [], []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.resolve() == out.resolve():
            continue
        if path.is_dir() or (path.is_file() and path.suffix in KINDS):
            chosen.append(path)  # a link too: its row says it was not followed
        else:
            ignored.append(valid(path.name))
    stems = [p.stem if p.suffix in KINDS and p.is_file() else p.name for p in chosen]
    entries = []
    for path, stem in zip(chosen, stems):
        name = stem if stems.count(stem) == 1 else path.name  # `alice/` and `alice.zip`: keep both names whole
        name = valid(name)  # a file name may be any bytes: the name goes into reports and the gradebook
        times = timestamps or {}
        when = times.get(path.name) or times.get(name)
        if when is None:
            when = datetime.fromtimestamp(_mtime(path), timezone.utc).isoformat(timespec="seconds")
        with phases.phase("hash"):
            digest = content_hash(path)
        entries.append(Entry(name=name, path=path, content_hash=digest, submitted_at=when))
    return entries, ignored


def grading_key(config: GradingConfig, secret: str | None, timeout: float, isolation: str,
                execute: bool | None) -> str:
    """Everything besides the config and the submission that decides a report: the cases, timeout, isolation."""
    specs = [s.model_dump() for s in (*config.cases, *config.hidden_specs(secret))]
    data = json.dumps({"cases": specs, "timeout": float(timeout), "isolation": isolation, "execute": execute},
                      sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


# --- grading -------------------------------------------------------------------------------

def run_entry(entry: Entry, config: GradingConfig, cases, timeout: float, slot=None, execute=None,
              isolation: str | None = None, submission=None) -> Result:
    """Read and run one entry (its worker, in `slot`); never raises. Score it with `finish_entry`.

    `submission`: the entry already read (grader.submission.load.Submission), e.g. shipped to a Dask worker.
    """
    from grader.pipeline import run_submission
    from grader.submission.load import SubmissionError, load_submission

    try:
        with phases.phase("load"):
            submission = submission or load_submission(entry.path)
        for attempt in range(2):
            if slot is not None:
                slot.tampered = []
            with phases.phase("run"):
                run = run_submission(entry.path, config, cases=cases, timeout=timeout, slot=slot,
                                     submission=submission, student_id=entry.name, execute=execute,
                                     isolation=isolation)
            if slot is None or not slot.tampered:
                return Result(entry=entry, status="graded", run=run)
            # Its server was changed during the session (the slot has replaced it): grade it again in the
            # new one, so nothing is recorded from a tampered slot; twice is on purpose, and not a grade.
        return Result(entry=entry, status="error", message=TAMPERED.format(", ".join(slot.tampered)))
    except SubmissionError as err:
        return Result(entry=entry, status="unreadable", message=str(err)[:1000])
    except Exception as err:  # noqa: BLE001 - one submission must never stop the batch
        return _failed(entry, err)


def finish_entry(result: Result) -> Result:
    """Score a run entry into its report (the grading process's own work, no worker needed)."""
    from grader.pipeline import score_run

    if result.run is None:
        return result
    try:
        with phases.phase("score"):
            report = score_run(result.run)
        return Result(entry=result.entry, status="graded", report=report)
    except Exception as err:  # noqa: BLE001
        return _failed(result.entry, err)


def grade_entry(entry: Entry, config: GradingConfig, cases, timeout: float, slot=None, execute=None,
                isolation: str | None = None, submission=None) -> Result:
    """Run and score one entry; never raises: an unreadable submission, or one that breaks the grader, is a row too."""
    return finish_entry(run_entry(entry, config, cases, timeout, slot, execute, isolation, submission))


def _failed(entry: Entry, err: Exception) -> Result:
    return Result(entry=entry, status="error",
                  message=f"the grader failed: {type(err).__name__}: {err}"[:1000] + "\n"
                          + traceback.format_exc(limit=5)[-2000:])


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
    try:
        # Servers first: their torch imports overlap with building the cases below.
        with phases.phase("start servers"):
            slots = [Slot(work / f"slot-{i}", level, config) for i in range(max(1, min(jobs, len(todo))))]
        with phases.phase("build cases"):
            cases = build_cases(config, secret)
        import torch

        # Scoring's tensors are tiny: a second intra-op thread only spins against the fork servers (20x slower
        # matmuls under load). The references above were built like a single grade's; workers use one thread too.
        torch.set_num_threads(1)
        gc.freeze()  # torch's and the cases' objects stay: collections then skip them (many per batch)
        for entry in todo:
            pending.put(entry)
        ran: queue.Queue = queue.Queue()

        def work_slot(slot) -> None:
            try:
                while True:
                    try:
                        entry = pending.get_nowait()
                    except queue.Empty:
                        return
                    ran.put(run_entry(entry, config, cases, timeout, slot=slot, execute=execute))
            finally:
                ran.put(None)  # this slot is done (or broke: its entry stays ungraded for the next run)

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

def _row(result: Result, config: GradingConfig, key: str, report_json: str | None) -> Row:
    report = result.report
    enabled = [ex for ex, cfg in config.exercises.items() if cfg.enabled]
    return Row(
        name=result.entry.name, entry=result.entry.path.name, content_hash=result.entry.content_hash,
        config_hash=config.fingerprint(), grading_key=key, grader_version=__version__, status=result.status,
        score=report.score if report else 0.0,
        max_score=report.max_score if report else sum(config.exercises[ex].points for ex in enabled),
        exercises={e.id: e.score for e in report.exercises} if report else {ex: 0.0 for ex in enabled},
        message=result.message, submitted_at=result.entry.submitted_at,
        started_at=report.started_at if report else None, finished_at=report.finished_at if report else None,
        duration_s=report.duration_s if report else None,
        graded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), report=report_json)


def report_path(out: Path, name: str) -> Path:
    return out / f"{name}.json"


def _write_report_file(path: Path, text: str) -> None:
    """A report beside the gradebook: written whole and renamed into place, not flushed to the disk.

    The row just committed holds the same text and is the record (its commits survive the grader's
    crash, not a power cut: WAL without a flush per commit); this file has that same guarantee, and
    a rerun writes it again from the row when it is missing or not that text.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(valid(text))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _report_file_is(path: Path, text: str) -> bool:
    """Whether the report file holds the row's report (a row from before rows held the file's text: exists)."""
    try:
        if not text.startswith("{\n"):
            return path.is_file()
        return path.read_text(encoding="utf-8") == valid(text)
    except (OSError, UnicodeDecodeError):
        return False


class Progress:
    """A rich progress bar on stderr with counts and an ETA; nothing at all with `quiet`."""

    def __init__(self, total: int, skipped: int, quiet: bool):
        self.counts = {"graded": 0, "skipped": skipped, "unreadable": 0, "error": 0}
        self.bar = None
        if quiet or not total:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.bar = Bar(SpinnerColumn(), TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("ETA"),
                       TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        self.task = self.bar.add_task("grading", total=total, counts=self._counts())
        self.bar.start()

    def _counts(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in self.counts.items() if n or k == "graded")

    def advance(self, status: str) -> None:
        self.counts[status] += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, counts=self._counts())

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run_batch(directory: Path, out: Path, config: GradingConfig, *, secret: str | None = None, jobs: int | None = None,
              timeout: float | None = None, isolation: str | None = None, regrade: bool = False, quiet: bool = False,
              scheduler: str | None = None, timestamps: Path | None = None, execute: bool | None = None,
              similarity: bool = True) -> BatchResult:
    started, before = time.perf_counter(), phases.snapshot()
    remove_stale_work()  # what a batch killed with SIGKILL left
    entries, ignored = discover(directory, out, read_timestamps(timestamps) if timestamps else None)
    out.mkdir(parents=True, exist_ok=True)
    timeout = timeout or config.timeout
    requested = isolation or config.isolation
    key = grading_key(config, secret, timeout, requested, execute)
    result = BatchResult(total=len(entries), ignored=ignored)
    with Gradebook(out) as book:
        todo = []
        for entry in entries:
            row = book.get(entry.name)
            current = (row is not None and not regrade and row.status in ("graded", "unreadable")
                       and (row.content_hash, row.config_hash, row.grading_key, row.grader_version)
                       == (entry.content_hash, config.fingerprint(), key, __version__))
            if not current:
                todo.append(entry)
                continue
            result.skipped += 1
            if row.submitted_at != entry.submitted_at:
                book.set_submitted_at(entry.name, entry.submitted_at)
            if row.report and not _report_file_is(report_path(out, entry.name), row.report):
                # deleted or changed since (or cut short by a power cut): write it again from the row
                write_atomically(report_path(out, entry.name), Report.model_validate_json(row.report)
                                 .model_dump_json(indent=2))
        book.set_meta("late_policy", config.late.model_dump(mode="json") if config.late else None)
        progress = Progress(len(todo), result.skipped, quiet)
        try:
            with _terminated_as_interrupt(), \
                    contextlib.closing(_grade(todo, config, secret, timeout, requested, jobs, scheduler, execute)) \
                    as results:
                for graded in results:
                    with phases.phase("write"):
                        report_json = None
                        if graded.report is not None:  # serialised once: the file and the row hold the same text
                            report_json = graded.report.model_dump_json(indent=2)
                            _write_report_file(report_path(out, graded.entry.name), report_json)
                        book.record(_row(graded, config, key, report_json))
                    progress.advance(graded.status)
                    if graded.status == "graded":
                        result.graded += 1
                    elif graded.status == "unreadable":
                        result.unreadable += 1
                    else:
                        result.errors += 1
        finally:
            progress.stop()
        rows = book.rows()
        policy = book.late_policy()
    result.gradebook = out / "gradebook.csv"
    write_atomically(result.gradebook, gradebook_csv(rows, policy))
    from grader.batch.summary import write_summary

    with phases.phase("summary"):
        result.summary = write_summary(rows, out, policy, similarity=similarity)
    result.seconds = round(time.perf_counter() - started, 3)
    result.phases = phases.since(before)
    return result


def _grade(todo, config, secret, timeout, isolation, jobs, scheduler, execute) -> Iterator[Result]:
    if not todo:
        return (r for r in ())
    if scheduler:
        from grader.batch.cluster import grade_on_dask

        return grade_on_dask(todo, config, secret, timeout, isolation, scheduler, execute)
    from grader.sandbox.levels import choose_level

    return grade_locally(todo, config, secret, timeout, choose_level(isolation), jobs or os.cpu_count() or 1,
                         execute)
