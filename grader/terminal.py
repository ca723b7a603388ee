"""The report on screen, in the spirit of the lecture's `cmp` lines."""

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grader.report import CheckResult, Report

STYLE = {"passed": "green", "partial": "yellow", "failed": "red"}


def _maxdiff(check: CheckResult) -> str:
    diffs = [c.max_abs_diff for c in check.cases if c.max_abs_diff is not None]
    return f"{max(diffs):.1e}" if diffs else "-"


def _exact(check: CheckResult) -> str:
    public = [c for c in check.cases if c.visibility == "public" and c.exact is not None]
    if not public:
        return "-"
    return "yes" if all(c.exact for c in public) else "no"


def print_report(report: Report, console: Console | None = None) -> None:
    console = console or Console()
    console.print(Text(f"Backprop Ninja grader {report.grader_version} - {report.submission.path}", style="bold"))
    if report.isolation.level != "bwrap":
        console.print(Text(f"isolation: {report.isolation.description}", style="yellow"))
    for ex in report.exercises:
        style = STYLE.get(ex.status, "red")
        console.print()
        console.print(Text.assemble((f"{ex.title}", "bold"), f"  ({ex.file}: {ex.function})  ",
                                    (f"{ex.score:.4g}/{ex.max_score:.4g}", style), f"  {ex.message}"))
        if ex.status in ("not_submitted", "error", "timeout", "crashed", "not_allowed") or ex.message.startswith("not implemented"):
            if ex.traceback:
                console.print(Text(ex.traceback, style="dim"))
            continue
        table = Table(show_edge=False, pad_edge=False, box=None)
        for col in ("gradient", "result", "cases", "exact", "maxdiff", "points", "message"):
            table.add_column(col, overflow="fold")
        for check in ex.checks:
            label = "ok" if check.status == "passed" else check.status
            name = check.name if check.name == "trajectory" else f"d{check.name}"
            table.add_row(name, Text(label, style=STYLE[check.status]),
                          f"{check.passed_cases}/{check.total_cases}", _exact(check), _maxdiff(check),
                          f"{check.score:.3g}/{check.max_score:.3g}", check.message)
        console.print(table)
    for note in report.notes:
        console.print(Text(f"note: {note}", style="dim"))
    if report.output.stderr.strip() or report.output.stdout.strip():
        console.print(Text("(the submission printed output; it is in the report's `output` field)", style="dim"))
    console.print()
    style = "green" if report.score == report.max_score else "yellow" if report.score else "red"
    console.print(Text.assemble(("Total: ", "bold"), (f"{report.score:g} / {report.max_score:g}", f"bold {style}")))
