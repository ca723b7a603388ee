"""The plain text of a check for the CI destinations (Gradescope, JUnit, GitHub Classroom, pytest).

Each check is split by case visibility (`split_check`): its public part and, when hidden cases ran, its
hidden part, each with its share of the check's points. `part_text` is what a learner needs about one
part: the verdict, the first reason, the hint, every case. Hidden cases never show more than the report
already does (pass/fail and the category of a failure).
"""

from dataclasses import dataclass, field

from grader.outputs.common import STOPPED, check_label
from grader.report import CaseResult, CheckResult, ExerciseResult, Report
from grader.safe_text import printable


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


def num(x: float) -> float:
    """A score in JSON and XML: six decimals."""
    return round(x, 6)


def points_text(x: float) -> str:
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
        if ex.status in STOPPED:
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


def hint_goes_to(parts: dict[str, Part]) -> str:
    """A check's hint comes from its public failures when there are any, else from hidden ones."""
    if "public" in parts and (not parts["public"].ok or "hidden" not in parts):
        return "public"
    return "hidden"


def _shows_traceback(check: CheckResult, ex: ExerciseResult) -> bool:
    """Whether `check` is the exercise's first failing check (where a traceback is shown once)."""
    return next((c for c in ex.checks if c.status != "passed"), None) is check


def check_text(check: CheckResult, ex: ExerciseResult, report: Report, *, with_hint: bool = True) -> str:
    """Public and hidden parts together (for CI formats, which the student sees in full anyway)."""
    parts = split_check(check, report)
    where = hint_goes_to(parts) if with_hint else None
    texts = [part_text(check, ex, p, report, hint_here=p.visibility == where) for p in parts.values()]
    if ex.traceback and _shows_traceback(check, ex):  # the student's own frames, once per exercise
        texts.append(ex.traceback.strip())
    points = f"Points: {points_text(check.score)} / {points_text(check.max_score)}"
    return "\n\n".join([*texts, points])


def failure_message(check: CheckResult, ex: ExerciseResult) -> str:
    """One line: why the check failed (the check's own message is already stripped of hidden values)."""
    if ex.status in STOPPED and ex.message:
        return ex.message
    return check.message or f"{check_label(check)} failed"


def shown(text: str) -> str:
    """Every string of a JSON view: valid, control characters and escape sequences shown escaped."""
    return printable(text, multiline=True)
