"""The report on screen, in the spirit of the lecture's `cmp` lines.

One compact line per gradient, in the order of the backward pass: exact,
approximate (the check passed), max abs diff, the returned shape, cases
passed and points; a failing gradient gets its hint on its own indented line
below it. Then a summary per exercise and the total. It stays readable with
colours off (rich honours NO_COLOR and plain pipes) and fits 80 columns.
Everything comes from the report; hidden cases only ever add to the counts.
Text a student controls (messages, tracebacks, file names, the path) is shown
with its control characters escaped (grader.safe_text), and never starts a
line: wrapped lines are indented and tracebacks quoted behind `  | `, so a
printed "Total: 100 / 100" cannot pass for the grader's own last line.
"""

import re
import textwrap

from rich.console import Console
from rich.text import Text

from grader.course.mlp import ATOMIC

from grader.course.spec import TRAJECTORY
from grader.feedback.labels import LABELS
from grader.report import CheckResult, ExerciseResult, Report
from grader.safe_text import one_line, printable

STATUS = {"passed": ("ok", "green"), "partial": ("PART", "yellow"), "failed": ("FAIL", "red")}
EXERCISE_STYLE = {"passed": "green", "partial": "yellow"}
STOPPED = ("not_submitted", "error", "timeout", "crashed", "not_allowed")
HINT_INDENT = 7
UPSTREAM_KIND = LABELS["cascade"]  # a hidden case that only repeats an upstream mistake
QUOTE = "  | "  # before every line of a student's traceback


def print_wrapped(console: Console, text: str, indent: int, style: str = "", hang: int = 0) -> None:
    """Word-wrapped to the console, every line indented (continuation lines `hang` more), no trailing spaces.

    Control characters are escaped; a word longer than the line is broken, so nothing overflows
    into a line of its own at the left margin.
    """
    width = max(20, console.width - indent)
    lines = textwrap.wrap(one_line(text), width, subsequent_indent=" " * hang, break_on_hyphens=False) or [""]
    for line in lines:
        console.print(Text(" " * indent + line, style=style), no_wrap=True, overflow="ignore", crop=False)


def print_quoted(console: Console, text: str, style: str = "dim") -> None:
    """A student's multi-line text (a traceback): every line behind QUOTE, long lines folded behind it too."""
    width = max(20, console.width - len(QUOTE))
    for line in printable(text, multiline=True).expandtabs(4).splitlines():
        line = line.rstrip()
        for start in range(0, max(1, len(line)), width):
            console.print(Text((QUOTE + line[start:start + width]).rstrip(), style=style), no_wrap=True,
                          overflow="ignore", crop=False)


def _points(score: float, max_score: float, digits: int = 3) -> str:
    return f"{score:.{digits}g}/{max_score:.{digits}g}"


def _shape(shape: list[int] | None) -> str:
    return str(tuple(shape)).replace(",)", ")") if shape is not None else "-"


def gradient_name(check: CheckResult) -> str:
    return check.name if check.name == TRAJECTORY else f"d{check.name}"


def public_cases(check: CheckResult):
    return [c for c in check.cases if c.visibility == "public"]


def exact(check: CheckResult) -> str:
    known = [c.exact for c in public_cases(check) if c.exact is not None]
    return ("yes" if all(known) else "no") if known else "-"


def approx(check: CheckResult) -> str:
    return {"passed": "yes", "partial": "some", "failed": "no"}[check.status]


def maxdiff(check: CheckResult) -> str:
    diffs = [c.max_abs_diff for c in public_cases(check) if c.max_abs_diff is not None]
    return f"{max(diffs):.1e}" if diffs else "-"


def shape(check: CheckResult) -> tuple[str, bool]:
    """The shape the student returned on the first public case that has one, and whether it is wrong."""
    for case in public_cases(check):
        if case.got_shape is not None:
            return _shape(case.got_shape), case.status == "wrong_shape"
    return "-", False


def hidden_line(check: CheckResult) -> str | None:
    """"k of m hidden cases passed", with the generic kinds of their failures: never a value."""
    hidden = [c for c in check.cases if c.visibility == "hidden"]
    failed = [c for c in hidden if not c.passed]
    if not failed:
        return None
    if all(c.hint == f"likely cause: {UPSTREAM_KIND}" for c in failed):
        return None  # says nothing the public hint and the cases column do not
    kinds = []
    for case in failed:
        kind = (case.hint or "").removeprefix("likely cause: ")
        if kind and kind not in kinds:
            kinds.append(kind)
    why = f" (likely cause: {'; '.join(kinds)})" if kinds else ""
    return f"Hidden cases: {len(hidden) - len(failed)} of {len(hidden)} passed{why}."


def feedback(check: CheckResult) -> str:
    """What to show under a failing gradient: its hint (else its message), and the hidden cases' counts."""
    if not check.hint:
        return check.message  # already says "k of m hidden cases passed"
    public_failed = any(c.visibility == "public" and not c.passed for c in check.cases)
    hidden = hidden_line(check) if public_failed else None  # else the hint is about the hidden cases
    return f"{check.hint} {hidden}" if hidden else check.hint


def first_to_fix(ex: ExerciseResult) -> CheckResult | None:
    """The first failing check in the order of the backward pass (the trajectory last)."""
    failing = [c for c in ex.checks if c.status != "passed"]
    order = {name: i for i, name in enumerate(ATOMIC)}
    return min(failing, key=lambda c: order.get(c.name, len(order)), default=None)


def stopped(ex: ExerciseResult) -> bool:
    """No per-gradient table: the file was not run, or nothing was implemented yet."""
    return ex.status in STOPPED or ex.message.startswith("not implemented")


def show_first(ex: ExerciseResult) -> CheckResult | None:
    """The first gradient to fix, shown with its hint above the table when several checks fail."""
    first = None if stopped(ex) else first_to_fix(ex)
    if first is None or not first.hint or sum(c.status != "passed" for c in ex.checks) < 2:
        return None
    return first


def more_levels(check: CheckResult) -> list[str]:
    """The levels of the check's hint after the first (the local rule, the worked expression)."""
    levels = check.hint_levels
    return list(levels[1:]) if levels and check.hint and levels[0] == check.hint else []


def more_levels_note(check: CheckResult) -> str | None:
    extra = len(more_levels(check))
    if not extra:
        return None
    return (f"({extra} more {'hint' if extra == 1 else 'hints'}, up to the worked expression: run with "
            "--hints all, or open the HTML page)")


def print_levels(console: Console, check: CheckResult, indent: int, hints: str) -> None:
    """Under the first gradient to fix: its next hint levels (--hints all), or how to see them."""
    if hints == "all":
        for i, level in enumerate(more_levels(check), 2):
            print_wrapped(console, f"{i}. {level}", indent)
    elif more_levels_note(check):
        print_wrapped(console, more_levels_note(check), indent, "dim")


def said_above(check: CheckResult, first: CheckResult | None) -> bool:
    """The row's hint is the one shown under "First to fix" (every check of a function that raised)."""
    return first is not None and check is not first and check.hint == first.hint and feedback(check) == first.hint


def exercise_message(ex: ExerciseResult) -> str:
    """The exercise's message; the first gradient to fix is said separately, in backward order."""
    return re.sub(r"; first to fix: \S+", "", ex.message) if show_first(ex) else ex.message


def _columns(checks: list[CheckResult]) -> tuple[int, int]:
    name = max([len("gradient")] + [len(gradient_name(c)) for c in checks])
    shp = max([len("shape")] + [len(shape(c)[0]) for c in checks])
    return name, shp


def _row(check: CheckResult, wname: int, wshape: int) -> Text:
    label, style = STATUS[check.status]
    shp, wrong_shape = shape(check)
    line = Text("  ")
    line.append(f"{label:<4}", style=f"bold {style}")
    line.append(f" {gradient_name(check):<{wname}} {exact(check):<5} {approx(check):<6} {maxdiff(check):>8}  ")
    line.append(f"{shp:<{wshape}}", style="red" if wrong_shape else "")
    line.append(f" {check.passed_cases:>2}/{check.total_cases:<2} {_points(check.score, check.max_score):>10}")
    return line


def print_exercise(ex: ExerciseResult, console: Console, hints: str = "first") -> None:
    style = EXERCISE_STYLE.get(ex.status, "red")
    score = _points(ex.score, ex.max_score, 4)
    title = Text(one_line(ex.title), style="bold")
    title.append(" " * max(2, console.width - len(title.plain) - len(score) - 1))
    title.append(score, style=f"bold {style}")
    console.print(title, overflow="fold")
    where = f"{ex.file}: {ex.function}" if ex.function not in ("", "-") else ex.file
    print_wrapped(console, f"{where} - {exercise_message(ex)}", 2)
    if stopped(ex):
        if ex.traceback:
            print_quoted(console, ex.traceback)
        return
    first = show_first(ex)
    if first is not None:
        console.print(Text(f"  First to fix: {gradient_name(first)}", style="bold"))
        print_wrapped(console, first.hint, 4, "bold")
        print_levels(console, first, 4, hints)
    wname, wshape = _columns(ex.checks)
    header = (f"       {'gradient':<{wname}} {'exact':<5} {'approx':<6} {'maxdiff':>8}  "
              f"{'shape':<{wshape}} {'cases':>5} {'points':>10}")
    console.print(Text(header, style="dim"), no_wrap=True, overflow="ellipsis")
    for check in ex.checks:
        console.print(_row(check, wname, wshape), no_wrap=True, overflow="ellipsis")
        if check.status != "passed" and feedback(check) and not said_above(check, first):
            print_wrapped(console, feedback(check), HINT_INDENT)
            if first is None and check is first_to_fix(ex):
                print_levels(console, check, HINT_INDENT, hints)


def print_summary(report: Report, console: Console) -> None:
    console.print(Text("Summary", style="bold"))
    width = max(len(ex.title) for ex in report.exercises)
    for ex in report.exercises:
        style = EXERCISE_STYLE.get(ex.status, "red")
        line = Text(f"  {ex.title:<{width}}  ")
        line.append(f"{_points(ex.score, ex.max_score, 4):>9}", style=style)
        line.append(f"  {ex.status}", style=style)
        console.print(line, no_wrap=True, overflow="ellipsis")


def print_report(report: Report, console: Console | None = None, hints: str = "first") -> None:
    """`hints`: "first" shows each hint's first level and says how to see more; "all" every level."""
    console = console or Console()
    print_wrapped(console, f"Backprop Ninja grader {report.grader_version} - {report.submission.path}", 0, "bold",
                  hang=2)
    if report.isolation.level != "bwrap":
        console.print(Text(f"isolation: {report.isolation.description}", style="yellow"))
    for ex in report.exercises:
        console.print()
        print_exercise(ex, console, hints)
    console.print()
    for note in report.notes:
        print_wrapped(console, f"note: {note}", 0, "dim", hang=6)
    if report.output.stderr.strip() or report.output.stdout.strip():
        console.print(Text("(the submission printed output; it is in the report's `output` field)", style="dim"))
    print_summary(report, console)
    style = "green" if report.score == report.max_score else "yellow" if report.score else "red"
    console.print(Text.assemble(("Total: ", "bold"), (f"{report.score:.4g} / {report.max_score:g}", f"bold {style}")))
