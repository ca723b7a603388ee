"""The instructor's summary of a batch: OUTDIR/summary.html (self-contained) and summary.md.

Built from the gradebook's rows and their reports: the score distribution,
the pass rate of every check in backward-pass order (which gradients the
class gets wrong), the most frequent diagnosed mistakes (the checks' hints,
counted; "first fix dX" cascades are left out, they are consequences), the
slowest submissions and the ones that failed. The HTML has inline CSS and
SVG charts (no script, no network); every piece of text that a student
controls (names, messages, hints that quote their code) is escaped.
"""

import html
import json
import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from grader.config import LatePolicy
from grader.exercises import EXERCISES
from grader.gradebook import Row, final_score, lateness
from grader.report import write_atomically
from grader.safe_text import one_line

TOP = 12        # rows of the mistakes, slowest and failed tables
BINS = 10       # bars of the score distribution
GRADER_FAILURES = ("timeout", "crashed", "error")  # exercise statuses that mean it did not run to the end


class CheckRate(BaseModel):
    exercise: str
    check: str
    passed: int
    total: int

    @property
    def label(self) -> str:
        return f"{self.exercise}: {'' if self.check == 'trajectory' else 'd'}{self.check}"

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


class Mistake(BaseModel):
    hint: str
    submissions: int
    checks: list[str]


class Failure(BaseModel):
    name: str
    what: str
    message: str


class Summary(BaseModel):
    generated_at: str
    submissions: int
    graded: int
    late: int
    mean: float | None
    median: float | None
    max_score: float
    histogram: list[int]
    checks: list[CheckRate]
    mistakes: list[Mistake]
    slowest: list[tuple[str, float]]
    failures: list[Failure]
    scores: list[tuple[str, float, float, str, bool]]  # name, final score, max, status, late


def summarize(rows: list[Row], policy: LatePolicy | None = None) -> Summary:
    reports = {row.name: json.loads(row.report) for row in rows if row.status == "graded" and row.report}
    finals = {row.name: final_score(row, lateness(row.submitted_at, policy)) for row in rows}
    max_score = max((row.max_score for row in rows), default=0.0)
    histogram = [0] * BINS
    for row in rows:
        fraction = finals[row.name] / row.max_score if row.max_score else 0.0
        histogram[min(BINS - 1, int(fraction * BINS))] += 1

    passed: Counter = Counter()
    seen_checks: dict[tuple[str, str], int] = {}
    hints: dict[str, set[str]] = {}
    hint_checks: dict[str, Counter] = {}
    failures = [Failure(name=row.name, what=row.status, message=row.message.splitlines()[0] if row.message else "")
                for row in rows if row.status != "graded"]
    for name, report in reports.items():
        for exercise in report.get("exercises", []):
            if exercise.get("status") in GRADER_FAILURES:
                failures.append(Failure(name=name, what=f"{exercise['id']}: {exercise['status']}",
                                        message=exercise.get("message", "")))
            for check in exercise.get("checks", []):
                key = (exercise["id"], check["name"])
                seen_checks[key] = seen_checks.get(key, 0) + 1
                if check.get("status") == "passed":
                    passed[key] += 1
                hint = check.get("hint")
                if hint and not hint.startswith("First fix"):
                    hints.setdefault(hint, set()).add(name)
                    hint_checks.setdefault(hint, Counter())[f"{exercise['id']}: {check['name']}"] += 1
    checks = []
    for ex_id, exercise in EXERCISES.items():  # the contract's order; atomic's checks run backward
        for check in exercise.checks:
            if (ex_id, check) in seen_checks:
                checks.append(CheckRate(exercise=ex_id, check=check, passed=passed[(ex_id, check)],
                                        total=seen_checks[(ex_id, check)]))
    mistakes = sorted((Mistake(hint=hint, submissions=len(names),
                               checks=[c for c, _ in hint_checks[hint].most_common(3)])
                       for hint, names in hints.items()), key=lambda m: (-m.submissions, m.hint))[:TOP]
    timed = sorted(((row.name, row.duration_s) for row in rows if row.duration_s is not None), key=lambda t: -t[1])
    graded_scores = [finals[row.name] for row in rows if row.status == "graded"]
    return Summary(
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), submissions=len(rows),
        graded=len(graded_scores), late=sum(lateness(row.submitted_at, policy).late for row in rows),
        mean=round(statistics.mean(graded_scores), 2) if graded_scores else None,
        median=round(statistics.median(graded_scores), 2) if graded_scores else None,
        max_score=max_score, histogram=histogram, checks=checks, mistakes=mistakes, slowest=timed[:TOP],
        failures=failures[: TOP * 4],
        scores=[(row.name, finals[row.name], row.max_score, row.status, lateness(row.submitted_at, policy).late)
                for row in rows])


# --- HTML ----------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{border-bottom:1px solid #eee;padding:.3rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f6f6}td.num{text-align:right;white-space:nowrap}
.stats span{display:inline-block;margin-right:1.5rem}.muted{color:#777}svg text{font-size:11px;fill:#333}
"""


def _e(text) -> str:
    return html.escape(one_line(text), quote=True)  # control characters shown as \x.. escapes


def _histogram_svg(summary: Summary) -> str:
    width, height, pad = 600, 200, 30
    bar = (width - 2 * pad) / BINS
    top = max(summary.histogram) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="score distribution" '
             f'width="{width}" height="{height + 40}" viewBox="0 0 {width} {height + 40}">']
    for i, count in enumerate(summary.histogram):
        h = (height - pad) * count / top
        x, y = pad + i * bar, height - h
        low, high = summary.max_score * i / BINS, summary.max_score * (i + 1) / BINS
        parts.append(f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" height="{h:.1f}" fill="#4c78a8">'
                     f'<title>{low:g} to {high:g}: {count}</title></rect>')
        if count:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle">{count}</text>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{height + 14}" text-anchor="middle">{low:g}</text>')
    parts.append(f'<text x="{width - pad:.1f}" y="{height + 30}" text-anchor="end">score (of {summary.max_score:g})'
                 "</text></svg>")
    return "".join(parts)


def _rates_svg(summary: Summary) -> str:
    label_w, bar_w, row_h = 190, 360, 18
    height = row_h * len(summary.checks) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="pass rate per check" '
             f'width="{label_w + bar_w + 60}" height="{height}" viewBox="0 0 {label_w + bar_w + 60} {height}">']
    for i, rate in enumerate(summary.checks):
        y = 5 + i * row_h
        colour = "#54a24b" if rate.rate >= 0.8 else "#eeca3b" if rate.rate >= 0.5 else "#e45756"
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{_e(rate.label)}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{bar_w}" height="{row_h - 5}" fill="#eee"/>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{bar_w * rate.rate:.1f}" height="{row_h - 5}" '
                     f'fill="{colour}"><title>{_e(rate.label)}: {rate.passed} of {rate.total}</title></rect>'
                     f'<text x="{label_w + bar_w + 6}" y="{y + 12}">{rate.rate:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _mistakes_svg(summary: Summary) -> str:
    if not summary.mistakes:
        return ""
    width, row_h, label_w = 560, 18, 40
    top = max(m.submissions for m in summary.mistakes)
    height = row_h * len(summary.mistakes) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="most frequent mistakes" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for i, mistake in enumerate(summary.mistakes):
        y = 5 + i * row_h
        w = (width - label_w - 40) * mistake.submissions / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">#{i + 1}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" fill="#f58518">'
                     f'<title>{_e(mistake.hint[:200])}</title></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 12}">{mistake.submissions}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are escaped here."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{_e(cell)}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _sections(summary: Summary) -> list[tuple[str, list[str], list[list[str]], set[int]]]:
    """(title, headers, rows, numeric columns) of every table, shared by the HTML and the Markdown."""
    return [
        ("Pass rate per check (backward-pass order)", ["check", "passed", "of", "rate"],
         [[c.label, str(c.passed), str(c.total), f"{c.rate:.0%}"] for c in summary.checks], {1, 2, 3}),
        ("Most frequent diagnosed mistakes", ["#", "submissions", "mistake (the hint students saw)", "seen on"],
         [[str(i + 1), str(m.submissions), m.hint, ", ".join(m.checks)] for i, m in enumerate(summary.mistakes)],
         {0, 1}),
        ("Slowest submissions", ["submission", "seconds"], [[n, f"{s:.2f}"] for n, s in summary.slowest], {1}),
        ("Failed submissions", ["submission", "what", "message"],
         [[f.name, f.what, f.message[:300]] for f in summary.failures], set()),
        ("All submissions", ["submission", "score", "max", "status", "late"],
         [[n, f"{s:g}", f"{m:g}", st, "late" if late else ""] for n, s, m, st, late in summary.scores], {1, 2}),
    ]


def render_html(summary: Summary) -> str:
    stats = [f"<span><b>{summary.submissions}</b> submissions</span>", f"<span><b>{summary.graded}</b> graded</span>"]
    if summary.mean is not None:
        stats += [f"<span>mean <b>{summary.mean:g}</b></span>", f"<span>median <b>{summary.median:g}</b></span>"]
    stats.append(f"<span><b>{summary.late}</b> late</span>")
    charts = {
        "Pass rate per check (backward-pass order)": _rates_svg(summary),
        "Most frequent diagnosed mistakes": _mistakes_svg(summary),
    }
    body = [f"<h1>Backprop Ninja: batch summary</h1><p class=muted>generated {_e(summary.generated_at)}</p>",
            f'<p class="stats">{"".join(stats)}</p>',
            f"<h2>Score distribution</h2>{_histogram_svg(summary)}"]
    for title, headers, rows, numeric in _sections(summary):
        body.append(f"<h2>{_e(title)}</h2>{charts.get(title, '')}")
        body.append(_table(headers, rows, numeric) if rows else "<p class=muted>none</p>")
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content=\"width=device-width, initial-scale=1\">"
            f"<title>Backprop Ninja: batch summary</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


# --- Markdown ------------------------------------------------------------------------------

def _md(text) -> str:
    """A table cell that cannot break the table or inject markup."""
    text = one_line(text)
    for char in "\\`*_[]<>|#!":
        text = text.replace(char, "\\" + char)
    return text


def render_markdown(summary: Summary) -> str:
    lines = ["# Backprop Ninja: batch summary", "",
             f"{summary.submissions} submissions, {summary.graded} graded"
             + (f", mean {summary.mean:g}, median {summary.median:g}" if summary.mean is not None else "")
             + f", {summary.late} late (of {summary.max_score:g} points). Generated {summary.generated_at}.", "",
             "## Score distribution", "", "| scores | submissions |", "|---|---:|"]
    for i, count in enumerate(summary.histogram):
        low, high = summary.max_score * i / BINS, summary.max_score * (i + 1) / BINS
        lines.append(f"| {low:g} to {high:g} | {count} |")
    for title, headers, rows, numeric in _sections(summary):
        lines += ["", f"## {title}", ""]
        if not rows:
            lines.append("none")
            continue
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---:" if i in numeric else "---" for i in range(len(headers))) + "|")
        lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_summary(rows: list[Row], out: Path, policy: LatePolicy | None = None) -> Path:
    """Write summary.html and summary.md into `out`; returns the HTML's path."""
    summary = summarize(rows, policy)
    write_atomically(out / "summary.md", render_markdown(summary))
    write_atomically(out / "summary.html", render_html(summary))
    return out / "summary.html"
