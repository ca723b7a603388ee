"""Where grades go: views of the Report for Gradescope, JUnit XML and GitHub Classroom.

Every function here reads a finished `Report` and nothing else (plus the
config's `hidden_visibility` for Gradescope): no grading happens here.

Hidden cases never show more than the report already does (pass/fail and
the category of a failure). Gradescope can also hold them back in time:
each check becomes one test for its public cases (always visible) and, when
hidden cases ran, one for its hidden cases with `hidden_visibility` from
grading.yaml, so a student sees nothing about hidden cases before the
instructor allows it.
"""

import json
import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from grader.report import CaseResult, CheckResult, ExerciseResult, Report, write_atomically
from grader.safe_text import clean_tree, one_line, printable

# Exercise statuses that are about the whole file, not one gradient.
EXERCISE_FAILURES = ("not_submitted", "error", "timeout", "crashed", "not_allowed")
WHEN_SHOWN = {
    "visible": "are shown below",
    "after_due_date": "are shown after the due date",
    "after_published": "are shown once your instructor publishes the grades",
    "hidden": "are seen by your instructor only",
}


def check_label(check: CheckResult) -> str:
    return "SGD trajectory" if check.name == "trajectory" else f"d{check.name}"


@dataclass
class Part:
    """The public (or hidden) cases of one check, with their share of its points."""

    visibility: str
    total: int
    passed: int = 0
    cases: list[CaseResult] = field(default_factory=list)
    score: float = 0.0
    max_score: float = 0.0

    @property
    def ok(self) -> bool:
        return self.passed == self.total


def split_check(check: CheckResult, report: Report) -> dict[str, Part]:
    """Split a check by case visibility; each case carries an equal share of the check's points."""
    parts = {}
    for vis in ("public", "hidden"):
        if check.cases:
            cases = [c for c in check.cases if c.visibility == vis]
            total = len(cases)
        else:  # not submitted: no per-case results, every case counts as failed
            cases, total = [], sum(1 for c in report.cases if c.visibility == vis)
        if total == 0:
            continue
        passed = sum(c.passed for c in cases)
        denominator = check.total_cases or total
        parts[vis] = Part(vis, total, passed, cases, score=check.max_score * passed / denominator,
                          max_score=check.max_score * total / denominator)
    return parts


def _num(x: float) -> float:
    return round(x, 6)


def _pts(x: float) -> str:
    """Points as a learner reads them: 7.69, 15, 0.5."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _case_lines(cases: list[CaseResult], descriptions: dict[str, str], check_hint: str | None) -> list[str]:
    lines, shown = [], {check_hint}
    for case in cases:
        desc = descriptions.get(case.case)
        head = f"{case.case} ({desc})" if desc else case.case
        text = "passed" if case.passed else case.message or case.status
        if case.note:
            text += f" [note: {case.note}]"
        lines.append(f"  {head}: {text}")
        if case.hint and not case.passed and case.hint not in shown:  # each distinct hint once
            shown.add(case.hint)
            lines.append(f"      hint: {case.hint}")
    return lines


def part_text(check: CheckResult, ex: ExerciseResult, part: Part, report: Report, *,
              hint_here: bool) -> str:
    """What a learner needs about one part of a check: verdict, first reason, hint, every case."""
    label = check_label(check)
    kind = "public " if part.visibility == "public" else "hidden "
    if part.ok:
        lines = [f"{label}: passed on all {part.total} {kind}cases."]
    else:
        lines = [f"{label}: failed on {part.total - part.passed} of {part.total} {kind}cases."]
        if ex.status in EXERCISE_FAILURES:
            lines.append(ex.message)
        first = next((c for c in part.cases if not c.passed), None)
        if part.visibility == "public" and first is not None and first.message and first.message != ex.message:
            lines.append(f"{first.message} (case {first.case})")
    hint = check.hint if hint_here else None
    if hint:
        lines.append(f"Hint: {hint}")
    if part.cases:
        descriptions = {c.name: c.description for c in report.cases if c.description}
        lines.append("Cases:")
        lines += _case_lines(part.cases, descriptions, check.hint)  # shown here or in a headline
    if part.visibility == "hidden":
        lines.append("Hidden cases show only whether they passed and the kind of failure, never values.")
    return "\n".join(lines)


def _hint_goes_to(parts: dict[str, Part]) -> str:
    """A check's hint comes from its public failures when there are any, else from hidden ones."""
    if "public" in parts and (not parts["public"].ok or "hidden" not in parts):
        return "public"
    return "hidden"


def first_failing(check: CheckResult, ex: ExerciseResult) -> bool:
    """Whether `check` is the exercise's first failing check (where a traceback is shown once)."""
    return next((c for c in ex.checks if c.status != "passed"), None) is check


def check_text(check: CheckResult, ex: ExerciseResult, report: Report, *, with_hint: bool = True) -> str:
    """Public and hidden parts together (for CI formats, which the student sees in full anyway)."""
    parts = split_check(check, report)
    where = _hint_goes_to(parts) if with_hint else None
    texts = [part_text(check, ex, p, report, hint_here=p.visibility == where) for p in parts.values()]
    if ex.traceback and first_failing(check, ex):  # the student's own frames, once per exercise
        texts.append(ex.traceback.strip())
    points = f"Points: {_pts(check.score)} / {_pts(check.max_score)}"
    return "\n\n".join([*texts, points])


def failure_message(check: CheckResult, ex: ExerciseResult) -> str:
    """One line: why the check failed (the check's own message is already stripped of hidden values)."""
    if ex.status in EXERCISE_FAILURES and ex.message:
        return ex.message
    return check.message or f"{check_label(check)} failed"


def _public_summary(report: Report, hidden_visibility: str) -> str:
    """The submission-level text on Gradescope: public information only."""
    lines = [f"Backprop Ninja autograder {report.grader_version}"]
    total_public = max_public = 0.0
    rows = []
    for ex in report.exercises:
        score = maximum = 0.0
        for check in ex.checks:
            part = split_check(check, report).get("public")
            if part:
                score += part.score
                maximum += part.max_score
        total_public += score
        max_public += maximum
        line = f"- {ex.title} ({ex.file}): {_pts(score)} / {_pts(maximum)} points on the public cases"
        if ex.status in EXERCISE_FAILURES:
            line += f" - {ex.message}"
        rows.append(line)
        if ex.traceback and ex.status in ("error", "crashed", "timeout"):
            rows.append("  " + ex.traceback.strip().replace("\n", "\n  "))
    lines.append(f"Public cases: {_pts(total_public)} / {_pts(max_public)} points.")
    if report.hidden_cases == "included":
        n_hidden = sum(c.visibility == "hidden" for c in report.cases)
        lines.append(f"Hidden cases ({n_hidden} per gradient) carry the other "
                     f"{_pts(report.max_score - max_public)} points; their results "
                     f"{WHEN_SHOWN[hidden_visibility]}.")
    lines += ["", *rows]
    for finding in report.integrity:
        where = f"{finding.file}:{finding.line}" if finding.line else finding.file
        message = finding.message if finding.file in finding.message else f"{where}: {finding.message}"
        lines.append(f"Not allowed: {message}")
    for note in report.notes:
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def _shown(text: str) -> str:
    """Every string of a JSON view: valid, control characters and escape sequences shown escaped."""
    return printable(text, multiline=True)


# --------------------------------------------------------------------------- Gradescope

def gradescope_results(report: Report, hidden_visibility: str = "after_published") -> dict:
    """Gradescope's results.json (autograder specification, "Output format")."""
    tests = []
    for i, ex in enumerate(report.exercises, start=1):
        for j, check in enumerate(ex.checks, start=1):
            parts = split_check(check, report)
            hint_at = _hint_goes_to(parts)
            for vis, part in parts.items():
                hidden = vis == "hidden"
                tests.append({
                    "name": f"{ex.file}: {check_label(check)}" + (" (hidden cases)" if hidden else ""),
                    "number": f"{i}.{j}" + (".1" if hidden else ""),
                    "score": _num(part.score),
                    "max_score": _num(part.max_score),
                    "status": "passed" if part.ok else "failed",
                    "output": part_text(check, ex, part, report, hint_here=vis == hint_at),
                    "output_format": "text",
                    "visibility": hidden_visibility if hidden else "visible",
                    "tags": [ex.id, vis],
                    "extra_data": {"exercise": ex.id, "check": check.name, "cases_passed": part.passed,
                                   "cases_total": part.total},
                })
    return clean_tree({
        "score": _num(report.score),
        "execution_time": round(report.duration_s, 3),
        "output": _public_summary(report, hidden_visibility),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",  # the grader's own log: instructors only
        "extra_data": {"grader_version": report.grader_version, "schema_version": report.schema_version,
                       "config_fingerprint": report.config_fingerprint,
                       "submission_sha256": report.submission.sha256,
                       "hidden_cases": report.hidden_cases, "isolation": report.isolation.level},
        "tests": tests,
    }, _shown)


def gradescope_error_results(message: str) -> dict:
    """results.json when no report could be made (e.g. the submission cannot be read)."""
    return clean_tree({
        "score": 0.0,
        "execution_time": 0,
        "output": ("The autograder could not grade this submission:\n"
                   f"{message}\n"
                   "Check that you uploaded the exercise files (atomic.py, cross_entropy.py, batchnorm.py, "
                   "embedding.py, train.py). If this looks wrong, tell your instructor."),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [],
    }, _shown)


# --------------------------------------------------------------------------- JUnit XML

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
                            ("status", ex.status), ("score", f"{_num(ex.score):g}"),
                            ("max_score", f"{_num(ex.max_score):g}")):
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
                kind = ex.status if ex.status in EXERCISE_FAILURES else first.status if first else "failed"
                fail = ET.SubElement(case, "failure", {
                    "message": _xml_text(failure_message(check, ex)), "type": kind})
                fail.text = _xml_text(check_text(check, ex, report))
        ET.SubElement(suite, "system-out").text = _xml_text(f"{ex.title}: {ex.message}\n"
                                                            f"score {_num(ex.score):g} / {_num(ex.max_score):g}")
        if ex.traceback:
            ET.SubElement(suite, "system-err").text = _xml_text(ex.traceback)
    ET.indent(_xml_safe(root))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --------------------------------------------------------------------------- GitHub Classroom

def classroom_results(report: Report) -> dict:
    """The runner result that GitHub Classroom's autograding reporter reads (version 1).

    The workflow passes it base64-encoded as a step output; the reporter sums
    the tests' `score` against `max_score` and fails the job when `status` is
    "fail" or "error".
    """
    tests = []
    for ex in report.exercises:
        per_check_ms = int(round(1000 * ex.seconds / len(ex.checks))) if ex.checks else 0
        for check in ex.checks:
            if check.status == "passed":
                status = "pass"
            elif ex.status in ("error", "timeout", "crashed"):
                status = "error"
            else:
                status = "fail"
            tests.append({
                "name": f"{ex.file}: {check_label(check)}",
                "status": status,
                "score": _num(check.score),
                "message": check_text(check, ex, report),
                "test_code": f"{ex.function}(...) -> {check_label(check)}",
                "filename": ex.file,
                "line_no": 0,
                "duration": per_check_ms,
            })
    statuses = {t["status"] for t in tests}
    overall = "pass" if statuses <= {"pass"} else "error" if statuses == {"error"} else "fail"
    return clean_tree({"version": 1, "status": overall, "max_score": _num(report.max_score), "tests": tests}, _shown)


# --------------------------------------------------------------------------- writing

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
