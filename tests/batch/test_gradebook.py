"""The gradebook: SQLite rows, late penalties, CSV exports (plain and for an LMS), and `grader gradebook export`."""

import csv
import io
import os
import time
from datetime import datetime, timezone

import pytest
import yaml

from conftest import ROOT, make_submission
from grader.batch.run import discover, read_timestamps
from grader.cli import main as cli_main
from grader.config import ConfigError, LatePolicy, load_config
from grader.batch.gradebook import Gradebook, Row, gradebook_csv, lateness, lms_csv

POLICY = LatePolicy(deadline="2026-03-01T23:59:00+01:00", grace_minutes=10, penalty_per_day=0.1, max_penalty=0.3)


def row(name: str, score: float = 80.0, submitted_at: str | None = "2026-03-01T12:00:00+00:00", **extra) -> Row:
    data = dict(name=name, entry=name, content_hash="c" * 64, config_hash="f" * 16, grading_key="k" * 16,
                grader_version="0.1.0", status="graded", score=score, max_score=100.0,
                exercises={"atomic": 40.0, "cross_entropy": score - 40}, submitted_at=submitted_at,
                graded_at="2026-03-02T00:00:00+00:00", report="{}")
    return Row(**{**data, **extra})


@pytest.mark.parametrize("when, late, days, penalty", [
    ("2026-03-01T22:59:00+00:00", False, 0, 0.0),   # the deadline itself (23:59 at +01:00)
    ("2026-03-01T23:08:00+00:00", False, 0, 0.0),   # within the grace minutes
    ("2026-03-01T23:10:00+00:00", True, 1, 0.1),    # one started day late
    ("2026-03-03T23:09:00+00:00", True, 2, 0.2),
    ("2026-03-20T00:00:00+00:00", True, 19, 0.3),   # capped by max_penalty
    ("2026-03-02T10:00:00", True, 1, 0.1),          # no offset: UTC
])
def test_lateness(when, late, days, penalty):
    got = lateness(when, POLICY)
    assert (got.late, got.days) == (late, days) and got.penalty == pytest.approx(penalty)
    assert lateness(when, None).late is False and lateness(None, POLICY).late is False


def test_the_late_policy_is_read_from_grading_yaml_and_changes_no_fingerprint(tmp_path):
    data = yaml.safe_load((ROOT / "grading.yaml").read_text())
    plain = load_config(ROOT / "grading.yaml")
    data["late"] = {"deadline": "2026-03-01 23:59:00", "penalty_per_day": 0.25}
    (tmp_path / "grading.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(tmp_path / "grading.yaml")
    assert config.late.deadline == datetime(2026, 3, 1, 23, 59, tzinfo=timezone.utc)
    assert config.fingerprint() == plain.fingerprint()  # moving a deadline regrades nothing
    data["late"]["penalty_per_day"] = 2
    (tmp_path / "grading.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match="late.penalty_per_day"):
        load_config(tmp_path / "grading.yaml")


def test_rows_are_stored_once_per_name_and_survive_a_reopen(tmp_path):
    with Gradebook(tmp_path) as book:
        book.record(row("ann", 50))
        book.record(row("ann", 70))  # graded again: replaced, not added
        book.record(row("bo"))
        book.set_meta("late_policy", POLICY.model_dump(mode="json"))
    with Gradebook(tmp_path) as book:
        assert [(r.name, r.score) for r in book.rows()] == [("ann", 70.0), ("bo", 80.0)]
        assert book.get("ann").exercises == {"atomic": 40.0, "cross_entropy": 30.0}
        assert book.late_policy() == POLICY and book.get("nobody") is None


def test_rows_can_leave_their_reports_behind_and_reports_are_read_one_by_one(tmp_path):
    with Gradebook(tmp_path) as book:
        book.record(row("cy", report='{"n": 3}'))
        book.record(row("ann", report='{"n": 1}'))
        book.record(row("bo", status="error", report='{"n": 2}'))  # not graded: its report is not counted
        book.record(row("dee", report=None))
        whole, light = book.rows(), book.rows(reports=False)
        reports = book.reports()
        assert next(reports) == ("ann", '{"n": 1}')  # a generator: the next report is read when asked for
        assert list(reports) == [("cy", '{"n": 3}')]
    assert [r.report for r in whole] == ['{"n": 1}', '{"n": 2}', '{"n": 3}', None]
    assert [r.report for r in light] == [None] * 4
    assert [r.model_copy(update={"report": None}) for r in whole] == light


def test_the_csv_applies_the_penalty_and_defuses_formulas():
    rows = [row("-on-time"), row("=HYPERLINK(\"http://x\")", submitted_at="2026-03-04T12:00:00+00:00"),
            row("broken", 0, status="unreadable", exercises={"atomic": 0.0, "cross_entropy": 0.0},
                message="not a zip")]
    table = list(csv.DictReader(io.StringIO(gradebook_csv(rows, POLICY))))
    assert list(table[0]) == ["name", "score", "max_score", "atomic", "cross_entropy", "status", "submitted_at",
                              "late", "days_late", "penalty", "raw_score"]
    on_time, formula, broken = table
    assert (on_time["name"], on_time["score"], on_time["late"]) == ("'-on-time", "80", "no")  # a leading -: defused
    assert formula["name"].startswith("'=") and formula["late"] == "yes" and formula["days_late"] == "3"
    assert formula["score"] == "56" and formula["raw_score"] == "80" and formula["penalty"] == "0.3"
    assert broken["status"] == "unreadable" and broken["score"] == "0"

    lms = list(csv.reader(io.StringIO(lms_csv(rows, POLICY, "SIS User ID"))))
    assert lms[0] == ["SIS User ID", "score", "max_score", "comment"]
    assert lms[2][1] == "56" and "late by 3 days (-30%)" in lms[2][3]
    assert "unreadable: not a zip" in lms[3][3]


def test_grader_gradebook_export(tmp_path, capsys):
    with Gradebook(tmp_path) as book:
        book.record(row("ann", submitted_at="2026-03-05T00:00:00+00:00"))
        book.set_meta("late_policy", POLICY.model_dump(mode="json"))
    assert cli_main(["gradebook", "export", str(tmp_path), "--lms", "--id-column", "Username"]) == 0
    text = (tmp_path / "gradebook-lms.csv").read_text()
    assert text.startswith("Username,score,max_score,comment\nann,56,100,")  # the stored policy: 3+ days late
    out = tmp_path / "plain.csv"
    data = yaml.safe_load((ROOT / "grading.yaml").read_text())
    (tmp_path / "grading.yaml").write_text(yaml.safe_dump(data, sort_keys=False))  # no late policy: no penalty
    assert cli_main(["gradebook", "export", str(tmp_path), "--out", str(out),
                     "--config", str(tmp_path / "grading.yaml")]) == 0
    assert "ann,80,100," in out.read_text() and f"wrote {out}" in capsys.readouterr().out
    assert cli_main(["gradebook", "export", str(tmp_path / "nothing")]) == 2


def test_submission_times_come_from_files_or_a_timestamps_csv(tmp_path):
    course = tmp_path / "course"
    make_submission(course / "ann")
    (course / "bo.zip").write_bytes(b"PK")
    stamp = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc).timestamp()
    os.utime(course / "bo.zip", (stamp, stamp))
    for file in (course / "ann").iterdir():
        os.utime(file, (stamp - 3600, stamp - 3600))
    os.utime(course / "ann", (stamp - 7200, stamp - 7200))
    entries, ignored = discover(course, tmp_path / "out")
    times = {e.name: e.submitted_at for e in entries}
    assert times == {"ann": "2026-03-02T07:00:00+00:00", "bo": "2026-03-02T08:00:00+00:00"} and ignored == []
    (tmp_path / "times.csv").write_text("name,submitted_at\nann,2026-03-01T10:00:00Z\nbo.zip,2026-03-04 09:30\n")
    entries, _ = discover(course, tmp_path / "out", read_timestamps(tmp_path / "times.csv"))
    assert {e.name: e.submitted_at for e in entries} == {"ann": "2026-03-01T10:00:00+00:00",
                                                         "bo": "2026-03-04T09:30:00+00:00"}
    (tmp_path / "bad.csv").write_text("name,submitted_at\nann,yesterday\n")
    with pytest.raises(ConfigError, match="not an ISO 8601 time"):
        read_timestamps(tmp_path / "bad.csv")


def test_entries_are_named_by_their_entry_and_others_are_ignored(tmp_path):
    course = tmp_path / "course"
    for name in ("ann", "bo"):
        make_submission(course / name)
    (course / "bo.zip").write_bytes(b"PK")           # the same name twice: both keep their full names
    (course / "cy.ipynb").write_text("{}")
    (course / "README.md").write_text("notes")
    (course / ".hidden").mkdir()
    out = course / "out"                              # the output folder inside the course: not a submission
    out.mkdir()
    entries, ignored = discover(course, out)
    assert [e.name for e in entries] == ["ann", "bo", "bo.zip", "cy"] and ignored == ["README.md"]
    before = {e.name: e.content_hash for e in entries}
    time.sleep(0.01)
    (course / "ann" / "notes.txt").write_text("not graded, not hashed")
    (course / "bo" / "atomic.py").write_text("# changed\n")
    after = {e.name: e.content_hash for e in discover(course, out)[0]}
    assert after["ann"] == before["ann"] and after["bo"] != before["bo"]
