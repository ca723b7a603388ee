"""The report as Markdown: for a CI step summary ($GITHUB_STEP_SUMMARY) or an LMS comment.

The same content as the screen (grader.outputs.terminal): per exercise, one table row
per gradient in the order of the backward pass with exact, approximate,
maxdiff, shape, cases, points and the hint; the first gradient to fix; a
summary table and the total. Built only from the report, so hidden cases add
counts and generic labels, never values or shapes. Text a student controls is
escaped: Markdown and HTML markup, and control characters (grader.safe_text).
"""

import re

from grader.outputs.common import feedback, gradient_name
from grader.outputs.terminal import (
    approx, exact, exercise_message, maxdiff, more_levels, said_above, shape, show_first, stopped,
)
from grader.report import Report
from grader.safe_text import one_line, printable

ICON = {"passed": "✅", "partial": "⚠️", "failed": "❌"}
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#~&!])")


def escape(text: str) -> str:
    """Plain text in a Markdown paragraph or table cell: no markup, no HTML, no broken rows, no control bytes."""
    return _SPECIAL.sub(r"\\\1", one_line(text))


def code(text: str) -> str:
    """Inline code that its own backticks cannot close (and no `|` to break a table row)."""
    text = one_line(text).replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest or text.startswith(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _code_block(text: str) -> list[str]:
    text = printable(text, multiline=True)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text.rstrip(), fence]


def _points(score: float, max_score: float, digits: int = 4) -> str:
    return f"{score:.{digits}g} / {max_score:.{digits}g}"


LEVEL_NAMES = ("the local rule", "the worked expression")


def hint_levels(check) -> list[str]:
    """The next levels of a check's hint, each in a <details> inside the previous one (GitHub renders them)."""
    levels = more_levels(check)
    if not levels:
        return []
    out = [f"**More help with `{gradient_name(check.name)}`:**", ""]
    for i, level in enumerate(levels):
        name = LEVEL_NAMES[i] if i < len(LEVEL_NAMES) else f"hint {i + 2}"
        out += [f"<details><summary>Hint {i + 2}: {name}</summary>", "", escape(level), ""]
    out += ["</details>"] * len(levels) + [""]
    return out


def render_markdown(report: Report) -> str:
    out = [f"## Backprop Ninja: {_points(report.score, report.max_score)}", ""]
    out += ["| | exercise | file | score | status |", "|---|---|---|---:|---|"]
    for ex in report.exercises:
        icon = ICON.get(ex.status, "❌")
        out.append(f"| {icon} | {escape(ex.title)} | {code(ex.file)} | {_points(ex.score, ex.max_score)} "
                    f"| {escape(ex.status)} |")
    out += ["", f"**Total: {_points(report.score, report.max_score)}**", ""]
    if report.hidden_cases == "included":
        out += ["Hidden cases count towards the score; they show only how many passed.", ""]
    for note in report.notes:
        out.append(f"- {escape(note)}")
    if report.notes:
        out.append("")

    for ex in report.exercises:
        out += [f"### {escape(ex.title)}: {_points(ex.score, ex.max_score)}", ""]
        where = f"{code(ex.file)}: {code(ex.function)}" if ex.function not in ("", "-") else code(ex.file)
        out += [f"{where}: {escape(exercise_message(ex))}", ""]
        if stopped(ex):
            if ex.traceback:
                out += _code_block(ex.traceback) + [""]
            continue
        first = show_first(ex)
        if first is not None:
            out += [f"> **First to fix: {code(gradient_name(first.name))}**: {escape(first.hint)}", ""]
        out += ["| | gradient | exact | approx | maxdiff | shape | cases | points | hint |",
                "|---|---|---|---|---:|---|---:|---:|---|"]
        for check in ex.checks:
            hint = escape(feedback(check)) if check.status != "passed" else ""
            if check.status != "passed" and said_above(check, first):
                hint = "as above"
            out.append(f"| {ICON[check.status]} | {code(gradient_name(check.name))} | {exact(check)} | {approx(check)} "
                       f"| {maxdiff(check)} | {shape(check)[0]} | {check.passed_cases}/{check.total_cases} "
                       f"| {check.score:.3g} / {check.max_score:.3g} | {hint} |")
        out.append("")
        for check in ex.checks:
            if check.status != "passed" and not said_above(check, first):
                out += hint_levels(check)
    return "\n".join(out)


def write_markdown(report: Report, path) -> None:
    from grader.report import write_atomically

    write_atomically(path, render_markdown(report))
