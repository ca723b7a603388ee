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
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from grader import __version__, phases
from grader.config import ConfigError, GradingConfig
from grader.batch.gradebook import Gradebook, Row, gradebook_csv
from grader.report import Report, write_atomically
from grader.safe_text import valid

from grader.batch.jobs import KINDS, Entry, Result
from grader.batch.local import _terminated_as_interrupt, grade_locally, remove_stale_work


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
        rows = book.rows(reports=False)  # the summary reads the reports one at a time
        policy = book.late_policy()
        result.gradebook = out / "gradebook.csv"
        write_atomically(result.gradebook, gradebook_csv(rows, policy))
        from grader.batch.summary import write_summary

        with phases.phase("summary"):
            result.summary = write_summary(rows, out, policy, similarity=similarity, reports=book.reports())
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
