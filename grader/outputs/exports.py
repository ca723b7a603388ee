"""The report's CI exports (`grade --gradescope/--junit/--classroom FILE`): one destination module each."""

import json
from pathlib import Path

from grader.outputs.classroom import classroom_results
from grader.outputs.gradescope import gradescope_results
from grader.outputs.junit import junit_xml
from grader.report import Report, write_atomically

EXPORTS = {
    "gradescope": "write Gradescope's results.json to FILE",
    "junit": "write JUnit XML (one testsuite per exercise, one testcase per check) to FILE",
    "classroom": "write the JSON that GitHub Classroom's autograding reporter reads to FILE",
}


def render(kind: str, report: Report, hidden_visibility: str = "after_published") -> str:
    if kind == "gradescope":
        return json.dumps(gradescope_results(report, hidden_visibility), indent=2) + "\n"
    if kind == "junit":
        return junit_xml(report)
    if kind == "classroom":
        return json.dumps(classroom_results(report), indent=2) + "\n"
    raise ValueError(f"unknown export {kind!r}")


def write_exports(report: Report, targets: dict[str, str | None], hidden_visibility: str) -> list[Path]:
    """Write every requested view (kind -> file); returns the files written."""
    written = []
    for kind, target in targets.items():
        if target:
            write_atomically(Path(target), render(kind, report, hidden_visibility))
            written.append(Path(target))
    return written
