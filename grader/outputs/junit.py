"""JUnit XML: one testsuite per exercise, one testcase per check, a failure for every check not passed.

The JUnit XML schema Jenkins and GitLab read, plus the `file` attribute the GitHub Actions reporters use
for annotations. Reads a finished Report only; every text is made valid XML 1.0, whatever it holds.
"""

import posixpath
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from grader.outputs.check_text import check_text, failure_message, num
from grader.outputs.common import STOPPED, check_label
from grader.report import Report
from grader.safe_text import one_line, printable

_XML_BAD = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str | None) -> str:
    """XML 1.0 cannot carry most control characters (student output may contain anything): shown escaped."""
    return _XML_BAD.sub("\ufffd", printable(text, multiline=True))


def _xml_safe(root: ET.Element) -> ET.Element:
    """Every attribute (on one line) and text of the tree made valid XML, whatever names and messages hold."""
    for element in root.iter():
        element.attrib = {key: _XML_BAD.sub("\ufffd", one_line(value)) for key, value in element.attrib.items()}
        if element.text is not None:
            element.text = _xml_text(element.text)
    return root


def _secs(x: float) -> str:
    return f"{max(x, 0.0):.6f}"


def junit_xml(report: Report) -> str:
    """JUnit XML: one testsuite per exercise, one testcase per check, a failure for every non-passed check."""
    failures = sum(c.status != "passed" for ex in report.exercises for c in ex.checks)
    tests = sum(len(ex.checks) for ex in report.exercises)
    root = ET.Element("testsuites", {
        "name": f"Backprop Ninja grader: {report.submission.path}", "tests": str(tests),
        "failures": str(failures), "errors": "0", "skipped": "0", "time": _secs(report.duration_s)})
    timestamp = report.started_at[:19]  # the schema's form: no time zone
    for n, ex in enumerate(report.exercises):
        ex_failures = sum(c.status != "passed" for c in ex.checks)
        suite = ET.SubElement(root, "testsuite", {
            "name": ex.id, "tests": str(len(ex.checks)), "failures": str(ex_failures), "errors": "0",
            "skipped": "0", "time": _secs(ex.seconds), "timestamp": timestamp, "hostname": "localhost",
            "id": str(n), "package": "backprop_ninja"})
        props = ET.SubElement(suite, "properties")
        for name, value in (("title", ex.title), ("file", ex.file), ("function", ex.function),
                            ("status", ex.status), ("score", f"{num(ex.score):g}"),
                            ("max_score", f"{num(ex.max_score):g}")):
            ET.SubElement(props, "property", {"name": name, "value": _xml_text(value)})
        per_check = ex.seconds / len(ex.checks) if ex.checks else 0.0
        # Where CI annotations point: the file inside the submission folder as given on the command line.
        file = (posixpath.normpath(posixpath.join(Path(report.submission.path).as_posix(), ex.file))
                if report.submission.kind == "folder" else ex.file)
        for check in ex.checks:
            case = ET.SubElement(suite, "testcase", {
                "name": check_label(check), "classname": f"backprop_ninja.{ex.id}", "file": file,
                "time": _secs(per_check)})
            if check.status != "passed":
                first = next((c for c in check.cases if not c.passed), None)
                kind = ex.status if ex.status in STOPPED else first.status if first else "failed"
                fail = ET.SubElement(case, "failure", {
                    "message": _xml_text(failure_message(check, ex)), "type": kind})
                fail.text = _xml_text(check_text(check, ex, report))
        ET.SubElement(suite, "system-out").text = _xml_text(f"{ex.title}: {ex.message}\n"
                                                            f"score {num(ex.score):g} / {num(ex.max_score):g}")
        if ex.traceback:
            ET.SubElement(suite, "system-err").text = _xml_text(ex.traceback)
    ET.indent(_xml_safe(root))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
