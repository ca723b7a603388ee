"""The batch gradebook: an embedded SQLite database in the output folder, and its CSV exports.

One row per submission name, written (and committed) as soon as that
submission is graded, so an interrupted batch, even killed with SIGKILL,
keeps every row it finished and none twice (the name is the primary key).
A row remembers what it was graded from (content hash, config fingerprint,
the cases and settings, grader version): a rerun skips a row whose inputs
are all unchanged. Late penalties are applied only when exporting, from the
row's submission time and the late policy, so moving a deadline regrades
nothing.
"""

import csv
import io
import json
import math
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pydantic import BaseModel

from grader.config import LatePolicy
from grader.course.registry import EXERCISES
from grader.report import write_atomically
from grader.safe_text import one_line, valid

FILE = "gradebook.sqlite"
STATUSES = ("graded", "unreadable", "error")  # error: the grader itself failed on it (retried on a rerun)

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    name TEXT PRIMARY KEY,
    entry TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    grading_key TEXT NOT NULL,
    grader_version TEXT NOT NULL,
    status TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    exercises TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    submitted_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    duration_s REAL,
    graded_at TEXT NOT NULL,
    report TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Row(BaseModel):
    name: str
    entry: str
    content_hash: str
    config_hash: str
    grading_key: str
    grader_version: str
    status: str
    score: float
    max_score: float
    exercises: dict[str, float]
    message: str = ""
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    graded_at: str
    report: str | None = None  # the report JSON, as written to <name>.json


class Lateness(BaseModel):
    late: bool = False
    days: int = 0
    penalty: float = 0.0  # fraction of the score taken


class Gradebook:
    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / FILE
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")  # a commit per submission, cheap, safe against a crash
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get(self, name: str) -> Row | None:
        cursor = self.db.execute("SELECT * FROM submissions WHERE name = ?", (name,))
        found = cursor.fetchone()
        return _row(cursor, found) if found else None

    def rows(self, reports: bool = True) -> list[Row]:
        """Every row by name; without their report JSON if not `reports` (a course's reports can be GBs)."""
        columns = ", ".join(field for field in Row.model_fields if reports or field != "report")
        cursor = self.db.execute(f"SELECT {columns} FROM submissions ORDER BY name")
        return [_row(cursor, values) for values in cursor]

    def reports(self) -> Iterator[tuple[str, str]]:
        """(name, report JSON) of every graded row by name, read from the database one at a time."""
        cursor = self.db.execute("SELECT name, report FROM submissions WHERE status = 'graded' AND report IS NOT NULL"
                                 " AND report != '' ORDER BY name")
        yield from cursor

    def record(self, row: Row) -> None:
        """Insert or replace the submission's row, committed at once."""
        data = {k: valid(v) if isinstance(v, str) else v for k, v in row.model_dump().items()}  # SQLite wants UTF-8
        data["exercises"] = json.dumps(row.exercises)
        columns = ", ".join(data)
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO submissions ({columns}) VALUES ({', '.join('?' * len(data))})",
                            tuple(data.values()))

    def set_submitted_at(self, name: str, submitted_at: str | None) -> None:
        with self.db:
            self.db.execute("UPDATE submissions SET submitted_at = ? WHERE name = ?", (submitted_at, name))

    def meta(self, key: str):
        found = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(found[0]) if found else None

    def set_meta(self, key: str, value) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def late_policy(self) -> LatePolicy | None:
        """The late policy of the last batch run (grading.yaml's `late`)."""
        stored = self.meta("late_policy")
        return LatePolicy.model_validate(stored) if stored else None


def _row(cursor, values) -> Row:
    data = dict(zip([c[0] for c in cursor.description], values))
    data["exercises"] = json.loads(data["exercises"])
    return Row.model_validate(data)


def lateness(submitted_at: str | None, policy: LatePolicy | None) -> Lateness:
    """Late by how many started days, and the penalty, for a submission time (ISO 8601)."""
    if policy is None or not submitted_at:
        return Lateness()
    when = datetime.fromisoformat(submitted_at)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    over = when - (policy.deadline + timedelta(minutes=policy.grace_minutes))
    if over <= timedelta(0):
        return Lateness()
    days = math.ceil(over / timedelta(days=1))
    return Lateness(late=True, days=days, penalty=min(policy.max_penalty, days * policy.penalty_per_day))


def final_score(row: Row, late: Lateness) -> float:
    return round(row.score * (1 - late.penalty), 6)


def _cell(value) -> str:
    """A CSV cell a spreadsheet will not run as a formula, on one line, control characters escaped.

    Names and messages are student-controlled.
    """
    text = one_line(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.4f}".rstrip("0")


def exercise_columns(rows: list[Row]) -> list[str]:
    seen = {ex for row in rows for ex in row.exercises}
    return [ex for ex in EXERCISES if ex in seen]


def gradebook_csv(rows: list[Row], policy: LatePolicy | None) -> str:
    """name, score (after any late penalty), max_score, one column per exercise, status, then lateness."""
    exercises = exercise_columns(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "score", "max_score", *exercises, "status", "submitted_at", "late", "days_late",
                     "penalty", "raw_score"])
    for row in rows:
        late = lateness(row.submitted_at, policy)
        writer.writerow([_cell(row.name), _number(final_score(row, late)), _number(row.max_score),
                         *(_number(row.exercises[ex]) if ex in row.exercises else "" for ex in exercises),
                         row.status, row.submitted_at or "", "yes" if late.late else "no", late.days,
                         _number(late.penalty), _number(row.score)])
    return out.getvalue()


def lms_csv(rows: list[Row], policy: LatePolicy | None, id_column: str) -> str:
    """An upload for an LMS: the id column (the submission's name), the final score, the maximum, a comment."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([id_column, "score", "max_score", "comment"])
    for row in rows:
        late = lateness(row.submitted_at, policy)
        score = final_score(row, late)
        comment = f"{_number(score)}/{_number(row.max_score)}"
        if late.late:
            comment += f"; late by {late.days} day{'s' if late.days != 1 else ''} (-{late.penalty:.0%})"
        if row.status != "graded":
            comment += f"; {row.status}: {row.message}"
        writer.writerow([_cell(row.name), _number(score), _number(row.max_score), _cell(comment)])
    return out.getvalue()


def export(folder: Path, out: Path | None = None, *, lms: bool = False, id_column: str = "id",
           policy: LatePolicy | None = None, use_stored_policy: bool = True) -> Path:
    """Write the gradebook of an output folder as CSV; returns the file written."""
    if not (folder / FILE).is_file():
        raise FileNotFoundError(f"no gradebook in {folder} (run `grader batch` first)")
    with Gradebook(folder) as book:
        rows = book.rows()
        if policy is None and use_stored_policy:
            policy = book.late_policy()
    out = out or folder / ("gradebook-lms.csv" if lms else "gradebook.csv")
    write_atomically(out, lms_csv(rows, policy, id_column) if lms else gradebook_csv(rows, policy))
    return out
