"""The pytest plugin, run as a student runs it: pytest in a subprocess, in a folder of its own."""

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT
from grader.report import Report

MISTAKES = ROOT / "examples" / "mistakes"


def pytest_run(cwd, *args, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GRADER_SECRET"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "grader.outputs.pytest_plugin", "-p", "no:cacheprovider",
                           "-p", "no:randomly", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    """One pytest session over the example with mistakes, its report, and pytest's own JUnit record."""
    home = tmp_path_factory.mktemp("student")
    shutil.copytree(MISTAKES, home / "assignments")
    shutil.copy(ROOT / "grading.yaml", home / "grading.yaml")  # found in the current folder by default
    proc = pytest_run(home, "--backprop-submission=assignments/", "--backprop-report=report.json",
                      "--junitxml=pytest.xml", "-rf")
    report = Report.model_validate_json((home / "report.json").read_text())
    return proc, report, ET.parse(home / "pytest.xml").getroot()


def test_one_test_per_gradient_with_the_reports_verdicts(student_run):
    proc, report, xml = student_run
    assert proc.returncode == 1, proc.stdout + proc.stderr  # some tests failed
    outcomes = {}
    for case in xml.iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[(case.get("classname"), case.get("name"))] = not failed
    # pytest's JUnit writer turns the node id backprop-ninja/atomic.py::dW1 into classname backprop-ninja.atomic
    expected = {(f"backprop-ninja.{ex.file.removesuffix('.py')}", c.name if c.name == "trajectory" else f"d{c.name}"):
                c.status == "passed" for ex in report.exercises for c in ex.checks}
    assert outcomes == expected
    n_failed = sum(not ok for ok in expected.values())
    n_passed = sum(expected.values())
    assert f"{n_failed} failed, {n_passed} passed" in proc.stdout
    assert 0 < n_failed < len(expected)


def test_the_hint_is_the_failure_message(student_run):
    proc, report, xml = student_run
    ex = report.exercise("embedding")
    check = ex.checks[0]
    case = next(c for c in xml.iter("testcase") if c.get("classname") == "backprop-ninja.embedding")
    failure = case.find("failure")
    headline = check.hint or check.message  # the example's dC[Xb] += demb has a known hint
    assert failure.get("message").startswith(headline[:40])  # the first line pytest shows
    assert "case lecture" in failure.text  # then the public cases
    assert "Backprop Ninja" in proc.stdout and f"{report.score:.2f} / {report.max_score:g}" in proc.stdout


def test_student_code_never_runs_in_the_pytest_process(student_run):
    _, report, _ = student_run
    assert report.isolation.workers_started >= 1
    assert report.submission.path.endswith("assignments")


def test_collect_only_and_k_do_not_grade(tmp_path):
    proc = pytest_run(tmp_path, f"--backprop-submission={MISTAKES}", f"--backprop-config={ROOT / 'grading.yaml'}",
                      "--backprop-report=report.json", "--collect-only", "-q", "-k", "atomic and dW1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backprop-ninja/atomic.py::dW1" in proc.stdout
    assert re.search(r"\b1/\d+ tests collected", proc.stdout)
    assert not (tmp_path / "report.json").exists()  # nothing was graded


def test_an_unreadable_submission_fails_every_test_with_the_reason(tmp_path):
    sub = tmp_path / "sub"
    for folder, name in (("a", "atomic.py"), ("b", "train.py")):
        (sub / folder).mkdir(parents=True)
        shutil.copy(MISTAKES / name, sub / folder / name)
    proc = pytest_run(tmp_path, f"--backprop-submission={sub}", f"--backprop-config={ROOT / 'grading.yaml'}",
                      "-q", "-k", "cross_entropy")
    assert proc.returncode == 1
    assert "could not be graded: the contract files are spread over several folders" in proc.stdout


def test_inert_without_the_option(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    assert True\n")
    proc = pytest_run(tmp_path, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "backprop" not in proc.stdout.lower()
    help_text = pytest_run(tmp_path, "--help").stdout
    assert "--backprop-submission" in help_text


def test_usage_errors(tmp_path):
    proc = pytest_run(tmp_path, "--backprop-submission=nowhere/")
    assert proc.returncode == 4 and "does not exist" in proc.stderr
    (tmp_path / "sub").mkdir()
    proc = pytest_run(tmp_path, "--backprop-submission=sub", "--backprop-config=missing.yaml")
    assert proc.returncode == 4 and "grading policy not found" in proc.stderr and "missing.yaml" in proc.stderr
