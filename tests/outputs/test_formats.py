"""Gradescope results.json, JUnit XML and GitHub Classroom JSON, checked field by field.

The expected fields come from the formats' own specifications, not from our output:
- Gradescope: the autograder specification's "Output format"
  (gradescope-autograders.readthedocs.io/en/latest/specs/);
- JUnit: the JUnit XML schema Jenkins and GitLab read (testsuites > testsuite > testcase,
  failure with message and type), plus the `file` attribute GitHub Actions reporters use;
- GitHub Classroom: the runner result that classroom-resources/autograding-grading-reporter
  decodes (version, status pass/fail/error, max_score, tests with name, status, score, message,
  test_code, filename, line_no, duration).
"""

import base64
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, SECRET
from grader.outputs.formats import classroom_results, gradescope_results, junit_xml
from grader.pipeline import grade
from grader.report import Report

MISTAKES = ROOT / "examples" / "mistakes"

# --- Gradescope, from the specification -------------------------------------------------
GS_TOP = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
          "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
GS_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
           "tags", "visibility", "extra_data"}
GS_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
GS_FORMATS = {"text", "html", "simple_format", "md", "ansi"}
GS_STATUS = {"passed", "failed"}
# What the issue asks every results.json to carry.
GS_TOP_REQUIRED = {"score", "execution_time", "output", "output_format", "visibility", "stdout_visibility", "tests"}
GS_TEST_REQUIRED = {"name", "number", "score", "max_score", "status", "output", "output_format", "visibility", "tags"}

# --- JUnit XML (Jenkins/Ant schema; GitLab and the GitHub Actions reporters read the same) --
JU_SUITES_ATTRS = {"name", "time", "tests", "failures", "errors", "skipped", "disabled", "timestamp"}
JU_SUITE_ATTRS = {"name", "tests", "failures", "errors", "skipped", "disabled", "time", "timestamp", "hostname",
                  "id", "package", "file"}
JU_SUITE_REQUIRED = {"name", "tests", "failures", "errors", "time", "timestamp", "hostname"}
JU_SUITE_CHILDREN = {"properties", "testcase", "system-out", "system-err"}
JU_CASE_ATTRS = {"name", "classname", "time", "file", "line", "assertions", "status"}
JU_CASE_CHILDREN = {"failure", "error", "skipped", "system-out", "system-err"}

# --- GitHub Classroom autograding reporter ----------------------------------------------
GC_TOP = {"version", "status", "max_score", "tests"}
GC_TEST = {"name", "status", "score", "message", "test_code", "filename", "line_no", "duration", "execution_time"}
GC_STATUS = {"pass", "fail", "error"}

NUMBER = (int, float)
HIDDEN_LEAKS = re.compile(r"relative error|max abs diff|seed|vocab=|\(\d+, \d+\)|\[\d+, \d+\]")


@pytest.fixture(scope="module")
def report(config, all_cases) -> Report:
    """The example with mistakes, public and hidden cases: graded once for the module."""
    return grade(MISTAKES, config, secret=SECRET, cases=all_cases)


@pytest.fixture(scope="module")
def partial_report(config, public_cases, tmp_path_factory) -> Report:
    """No secret, one file missing: public cases only, a not-submitted exercise."""
    from conftest import make_submission

    folder = make_submission(tmp_path_factory.mktemp("partial") / "sub", drop=("batchnorm.py",))
    return grade(folder, config, cases=public_cases)


def all_checks(report):
    return [(ex, c) for ex in report.exercises for c in ex.checks]


# ------------------------------------------------------------------------ Gradescope

def check_gradescope_fields(results: dict) -> None:
    assert set(results) <= GS_TOP and GS_TOP_REQUIRED <= set(results)
    assert isinstance(results["score"], NUMBER) and isinstance(results["execution_time"], NUMBER)
    assert isinstance(results["output"], str) and results["output"]
    assert results["output_format"] in GS_FORMATS
    assert results["visibility"] in GS_VISIBILITY and results["stdout_visibility"] in GS_VISIBILITY
    assert isinstance(results.get("extra_data", {}), dict)
    for test in results["tests"]:
        assert set(test) <= GS_TEST and GS_TEST_REQUIRED <= set(test), test["name"]
        assert isinstance(test["name"], str) and isinstance(test["number"], str)
        assert isinstance(test["output"], str) and test["output_format"] in GS_FORMATS
        assert isinstance(test["score"], NUMBER) and isinstance(test["max_score"], NUMBER)
        assert 0 <= test["score"] <= test["max_score"] + 1e-9
        assert test["status"] in GS_STATUS and test["visibility"] in GS_VISIBILITY
        assert isinstance(test["tags"], list) and all(isinstance(t, str) for t in test["tags"])
        assert (test["status"] == "passed") == (abs(test["score"] - test["max_score"]) < 1e-9)
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]), abs=1e-3)
    numbers = [t["number"] for t in results["tests"]]
    assert len(set(numbers)) == len(numbers)


def test_gradescope_follows_the_specification(report, config):
    results = gradescope_results(report, config.hidden_visibility)
    check_gradescope_fields(results)
    json.dumps(results)  # plain JSON types only
    assert results["score"] == pytest.approx(report.score, abs=1e-6)
    assert results["stdout_visibility"] == "hidden"  # the grader's log is for instructors


def test_gradescope_has_a_public_and_a_hidden_test_per_check(report, config):
    results = gradescope_results(report, config.hidden_visibility)
    checks = all_checks(report)
    public = [t for t in results["tests"] if "public" in t["tags"]]
    hidden = [t for t in results["tests"] if "hidden" in t["tags"]]
    assert len(public) == len(hidden) == len(checks) and len(results["tests"]) == 2 * len(checks)
    assert {t["visibility"] for t in public} == {"visible"}
    assert {t["visibility"] for t in hidden} == {config.hidden_visibility} == {"after_published"}
    # Per check, the two parts add up to the report's score and maximum.
    for (ex, check), pub, hid in zip(checks, public, hidden):
        assert pub["score"] + hid["score"] == pytest.approx(check.score, abs=1e-5)
        assert pub["max_score"] + hid["max_score"] == pytest.approx(check.max_score, abs=1e-5)
        assert ex.id in pub["tags"] and ex.id in hid["tags"]


def test_gradescope_hidden_visibility_is_the_configs(report):
    results = gradescope_results(report, "after_due_date")
    assert {t["visibility"] for t in results["tests"] if "hidden" in t["tags"]} == {"after_due_date"}


def test_gradescope_never_shows_hidden_values_or_hidden_results_early(report, config):
    results = gradescope_results(report, config.hidden_visibility)
    for test in results["tests"]:
        if "hidden" in test["tags"]:
            assert not HIDDEN_LEAKS.search(test["output"]), test["name"]
    # The always-visible text speaks of public cases only: no hidden verdicts, no total that includes them.
    visible = results["output"] + "".join(t["output"] for t in results["tests"] if t["visibility"] == "visible")
    assert "hidden-1" not in visible and "hidden cases passed" not in visible
    assert f"{report.score:.2f}" not in results["output"]


def test_gradescope_feedback_carries_the_message_and_the_hint(report, config):
    results = gradescope_results(report, config.hidden_visibility)
    by_name = {t["name"]: t for t in results["tests"]}
    dc = report.exercise("embedding").checks[0]
    test = by_name["embedding.py: dC"]
    assert test["status"] == "failed" and "case lecture" in test["output"]
    assert (dc.hint or "") in test["output"]  # the example's dC[Xb] += demb has a known hint
    assert by_name["cross_entropy.py: dlogits"]["status"] == "passed"


def test_gradescope_without_hidden_cases_and_with_a_missing_file(partial_report):
    results = gradescope_results(partial_report)
    check_gradescope_fields(results)
    assert len(results["tests"]) == len(all_checks(partial_report))
    assert {t["visibility"] for t in results["tests"]} == {"visible"}
    missing = [t for t in results["tests"] if t["name"].startswith("batchnorm.py")]
    assert missing and all(t["score"] == 0 and "batchnorm.py was not submitted" in t["output"] for t in missing)
    assert results["score"] == pytest.approx(partial_report.score)


# ------------------------------------------------------------------------ JUnit

def test_junit_parses_and_its_counts_match_the_report(report):
    root = ET.fromstring(junit_xml(report))
    assert root.tag == "testsuites" and set(root.attrib) <= JU_SUITES_ATTRS
    checks = all_checks(report)
    failed = [c for _, c in checks if c.status != "passed"]
    assert int(root.get("tests")) == len(checks) and int(root.get("failures")) == len(failed)
    assert int(root.get("errors")) == 0
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [ex.id for ex in report.exercises]
    for suite, ex in zip(suites, report.exercises):
        assert set(suite.attrib) <= JU_SUITE_ATTRS and JU_SUITE_REQUIRED <= set(suite.attrib)
        assert {child.tag for child in suite} <= JU_SUITE_CHILDREN
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp"))
        float(suite.get("time"))
        cases = suite.findall("testcase")
        assert len(cases) == int(suite.get("tests")) == len(ex.checks)
        failures = [c for c in cases if c.find("failure") is not None]
        assert len(failures) == int(suite.get("failures")) == sum(c.status != "passed" for c in ex.checks)
        for case, check in zip(cases, ex.checks):
            assert set(case.attrib) <= JU_CASE_ATTRS and {"name", "classname", "time"} <= set(case.attrib)
            assert {child.tag for child in case} <= JU_CASE_CHILDREN
            assert float(case.get("time")) >= 0
            failure = case.find("failure")
            assert (failure is None) == (check.status == "passed")
            if failure is not None:
                assert failure.get("message") and failure.get("type")
                assert check.hint is None or check.hint in failure.text
    # (classname, name) identify a test in GitLab: they must be unique.
    keys = [(c.get("classname"), c.get("name")) for c in root.iter("testcase")]
    assert len(set(keys)) == len(keys)


def test_junit_survives_control_characters(report):
    dirty = report.model_copy(deep=True)
    dirty.exercises[0].message = "bad \x00 bytes \x1b[31m and \ud800 too"
    dirty.exercises[0].traceback = "Traceback\x07"
    root = ET.fromstring(junit_xml(dirty))
    assert root.find("testsuite/system-out").text.startswith("Exercise 1")


# ------------------------------------------------------------------------ GitHub Classroom

def test_classroom_follows_the_reporters_format(report):
    results = classroom_results(report)
    assert set(results) == GC_TOP and results["version"] == 1
    assert results["status"] == "fail"  # the example has mistakes
    assert results["max_score"] == pytest.approx(report.max_score)
    checks = all_checks(report)
    assert len(results["tests"]) == len(checks)
    for test, (ex, check) in zip(results["tests"], checks):
        assert set(test) <= GC_TEST and {"name", "status", "score", "message"} <= set(test)
        assert test["status"] in GC_STATUS and (test["status"] == "pass") == (check.status == "passed")
        assert isinstance(test["line_no"], int) and isinstance(test["duration"], int)
        assert test["score"] == pytest.approx(check.score, abs=1e-6)
    # The reporter sums the tests' scores against max_score.
    assert sum(t["score"] for t in results["tests"]) == pytest.approx(report.score, abs=1e-4)
    # ... after decoding the step output the workflow gives it.
    encoded = base64.b64encode(json.dumps(results).encode()).decode()
    assert json.loads(base64.b64decode(encoded)) == results


def test_classroom_status_for_a_missing_file_and_for_full_marks(partial_report):
    results = classroom_results(partial_report)
    assert results["status"] == "fail"
    assert {t["status"] for t in results["tests"] if t["filename"] == "batchnorm.py"} == {"fail"}
    perfect = partial_report.model_copy(deep=True)
    for _, check in all_checks(perfect):
        check.status, check.score = "passed", check.max_score
    results = classroom_results(perfect)
    assert results["status"] == "pass" and {t["status"] for t in results["tests"]} == {"pass"}


# ------------------------------------------------------------------------ the command line

def test_all_formats_at_once_quietly_with_min_score(tmp_path):
    out = {name: tmp_path / name for name in ("r.json", "gs.json", "junit.xml", "classroom.json")}
    proc = subprocess.run(
        [sys.executable, "-m", "grader", "grade", str(MISTAKES), "--out", str(out["r.json"]),
         "--gradescope", str(out["gs.json"]), "--junit", str(out["junit.xml"]),
         "--classroom", str(out["classroom.json"]), "--min-score", "100", "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr  # below --min-score
    assert proc.stdout == "" and proc.stderr == ""  # --quiet
    report = Report.model_validate_json(out["r.json"].read_text())
    check_gradescope_fields(json.loads(out["gs.json"].read_text()))
    assert int(ET.parse(out["junit.xml"]).getroot().get("tests")) == len(all_checks(report))
    assert sum(t["score"] for t in json.loads(out["classroom.json"].read_text())["tests"]) == \
        pytest.approx(report.score, abs=1e-4)


# ------------------------------------------------------------------------ the workflow template

def test_github_workflow_template_is_consistent_with_the_cli():
    import shlex

    import yaml

    from grader.cli import build_parser

    workflow = yaml.safe_load((ROOT / "templates" / "github-classroom.yml").read_text())
    job = workflow["jobs"]["run-autograding-tests"]  # the name GitHub Classroom's reporter looks up
    steps = {s["name"]: s for s in job["steps"]}
    command = steps["Grade"]["run"]
    assert "secrets.GRADER_SECRET" in steps["Grade"]["env"]["GRADER_SECRET"]
    for name, value in {**workflow["env"], "GITHUB_STEP_SUMMARY": "summary.md"}.items():
        command = command.replace(f'"${name}"', shlex.quote(value))
    argv = shlex.split(command)
    assert argv[:2] == ["grader", "grade"]
    args = build_parser().parse_args(argv[1:])  # every flag the template uses exists
    assert args.markdown == "summary.md" and args.classroom and args.junit and args.min_score == 100
    assert steps["Upload the report"]["uses"].startswith("actions/upload-artifact@")
    reporter = steps["Autograding Reporter"]
    runner = reporter["with"]["runners"]
    assert f"{runner.upper()}_RESULTS" in reporter["env"]  # how the reporter finds the base64 result
