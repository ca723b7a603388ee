"""GitHub Classroom: the runner result that classroom-resources/autograding-grading-reporter decodes
(version, status pass/fail/error, max_score, tests with name, status, score, message, test_code,
filename, line_no, duration), and the workflow template that runs the grader for it."""

import base64
import json

import pytest

from conftest import ROOT, all_checks
from grader.outputs.classroom import classroom_results

# --- GitHub Classroom autograding reporter ----------------------------------------------
GC_TOP = {"version", "status", "max_score", "tests"}
GC_TEST = {"name", "status", "score", "message", "test_code", "filename", "line_no", "duration", "execution_time"}
GC_STATUS = {"pass", "fail", "error"}


@pytest.fixture(scope="module")
def report(mistakes_report):
    return mistakes_report


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
