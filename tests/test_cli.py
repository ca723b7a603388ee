"""The `grader` command as users run it: exit codes, the report file, the schema."""

import json
import os
import subprocess
import sys

import pytest

from conftest import EXERCISE_IDS, MAX_SCORE, ROOT, SECRET
from grader.report import SCHEMA_VERSION, Report


def run(*args, env=None, cwd=ROOT):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=full_env)


@pytest.fixture(scope="module")
def graded_with_secret(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "report.json"
    proc = run("grade", "examples/mistakes", "--out", str(out), "--min-score", "100",
               env={"GRADER_SECRET": SECRET, "NO_COLOR": "1"})
    return proc, out


def test_grade_writes_a_valid_report_and_exit_1_under_min_score(graded_with_secret):
    proc, out = graded_with_secret
    assert proc.returncode == 1
    assert "below --min-score 100" in proc.stderr
    report = Report.model_validate_json(out.read_text())
    assert report.schema_version == SCHEMA_VERSION
    assert 0 < report.score < report.max_score == MAX_SCORE
    assert report.hidden_cases == "included"
    assert [e.id for e in report.exercises] == list(EXERCISE_IDS)
    data = json.loads(out.read_text())
    for key in ("score", "max_score", "exercises", "submission", "environment", "grader_version", "isolation"):
        assert key in data
    check = data["exercises"][0]["checks"][0]
    assert set(check) >= {"name", "score", "max_score", "cases"}
    assert set(check["cases"][0]) >= {"passed", "exact", "max_abs_diff", "rel_err", "expected_shape",
                                     "got_shape", "message", "hint", "visibility"}
    assert len(data["submission"]["sha256"]) == 64
    # The terminal shows the exercises and the total.
    assert "Exercise 1" in proc.stdout and "Total" in proc.stdout


def test_report_never_contains_the_secret(graded_with_secret):
    proc, out = graded_with_secret
    assert SECRET not in out.read_text()
    assert SECRET not in proc.stdout + proc.stderr


def test_full_marks_meet_min_score_and_quiet_prints_nothing(tmp_path):
    out = tmp_path / "r.json"
    proc = run("grade", "solutions", "--out", str(out), "--min-score", "100", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert json.loads(out.read_text())["score"] == MAX_SCORE


@pytest.mark.parametrize("args, expected", [
    (["grade"], "the following arguments are required: path"),
    (["grade", "no/such/folder", "--out", "/dev/null"], "submission not found"),
    (["grade", "solutions", "--timeout", "-3"], "must be positive"),
    (["grade", "solutions", "--secret-file", "/no/such/secret"], "cannot read the secret file"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_exit_2_with_one_line(args, expected):
    proc = run(*args)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_schema_command(tmp_path):
    proc = run("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert schema["title"] == "Report"
    assert {"score", "max_score", "exercises", "schema_version"} <= set(schema["properties"])
    proc = run("schema", "--out", str(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text()) == schema


def test_console_script_entry_point():
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "grader"), "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("grader ")
