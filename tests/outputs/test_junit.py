"""JUnit XML, checked against the schema Jenkins and GitLab read (testsuites > testsuite > testcase,
failure with message and type), plus the `file` attribute GitHub Actions reporters use."""

import re
import xml.etree.ElementTree as ET

import pytest

from conftest import all_checks
from grader.outputs.junit import junit_xml

# --- JUnit XML (Jenkins/Ant schema; GitLab and the GitHub Actions reporters read the same) --
JU_SUITES_ATTRS = {"name", "time", "tests", "failures", "errors", "skipped", "disabled", "timestamp"}
JU_SUITE_ATTRS = {"name", "tests", "failures", "errors", "skipped", "disabled", "time", "timestamp", "hostname",
                  "id", "package", "file"}
JU_SUITE_REQUIRED = {"name", "tests", "failures", "errors", "time", "timestamp", "hostname"}
JU_SUITE_CHILDREN = {"properties", "testcase", "system-out", "system-err"}
JU_CASE_ATTRS = {"name", "classname", "time", "file", "line", "assertions", "status"}
JU_CASE_CHILDREN = {"failure", "error", "skipped", "system-out", "system-err"}


@pytest.fixture(scope="module")
def report(mistakes_report):
    return mistakes_report


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
