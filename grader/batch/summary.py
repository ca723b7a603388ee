"""The instructor's summary of a batch: OUTDIR/summary.html (self-contained) and summary.md.

Built from the gradebook's rows and their reports: the score distribution,
the pass rate of every check in backward-pass order (which gradients the
class gets wrong), the most frequent diagnosed mistakes (the checks' hints,
counted; "first fix dX" cascades are left out, they are consequences), the
slowest submissions and the ones that failed. The class on the graph: each
exercise's computation graph (grader.outputs.graph) as a heat map of its nodes' pass
rates, with where the class breaks (the nodes that are the first to fix)
and the most common diagnosed mistake there. Shared wrong answers: groups
of submissions whose wrong gradients are numerically identical on the
hidden cases where no catalogued mistake explains them (the reports'
answer digests): evidence for the instructor to look at, never a penalty;
off with `grader batch --no-similarity`. The HTML has inline CSS and SVG
(no script, no network); every piece of text that a student controls
(names, messages, hints that quote their code) is escaped.
"""

import html
import json
import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from grader.config import LatePolicy
from grader.course.registry import EXERCISES
from grader.batch.gradebook import Row, final_score, lateness
from grader.report import ExerciseResult, write_atomically
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


SHARED = "Shared wrong answers"


def shared_note(summary: "Summary") -> str:
    if not summary.similarity:
        return "Not computed (switched off with --no-similarity)."
    return ("Submissions whose wrong gradients are numerically identical on the hidden cases, where no known "
            "mistake explains them. Evidence to look at, never a penalty: right answers are never compared.")


class NodeRate(BaseModel):
    """One node of an exercise's graph across the class."""

    exercise: str
    check: str
    passed: int
    total: int
    first_to_fix: int = 0            # submissions whose first gradient to fix is this one
    mistake: str | None = None       # the most common diagnosed mistake of those
    mistake_count: int = 0

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def label(self) -> str:
        return f"{self.exercise}: {'' if self.check == 'trajectory' else 'd'}{self.check}"


class SharedAnswer(BaseModel):
    """Submissions that returned the same wrong numbers for these gradients (evidence, not a verdict)."""

    submissions: list[str]
    gradients: list[str]


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
    nodes: list[NodeRate] = []
    similarity: bool = True
    shared: list[SharedAnswer] = []


def class_nodes(reports: dict[str, dict]) -> list[NodeRate]:
    """Pass rate, first-to-fix count and most common mistake per (exercise, check)."""
    from grader.outputs.html_report import first_to_fix, verdict

    seen: dict[tuple[str, str], list[int]] = {}
    broke: dict[tuple[str, str], Counter] = {}
    for report in reports.values():
        for data in report.get("exercises", []):
            try:
                ex = ExerciseResult.model_validate(data)
            except ValueError:
                continue
            first = first_to_fix(ex)
            for check in ex.checks:
                tally = seen.setdefault((ex.id, check.name), [0, 0])
                tally[0] += check.status == "passed"
                tally[1] += 1
                if first is not None and check.name == first.name and verdict(ex, check) == "wrong":
                    broke.setdefault((ex.id, check.name), Counter())[check.hint or ""] += 1
    nodes = []
    for (ex_id, name), (passed, total) in seen.items():
        tally = broke.get((ex_id, name), Counter())
        named = [(hint, k) for hint, k in tally.most_common() if hint]
        nodes.append(NodeRate(exercise=ex_id, check=name, passed=passed, total=total,
                              first_to_fix=sum(tally.values()), mistake=named[0][0] if named else None,
                              mistake_count=named[0][1] if named else 0))
    return nodes


def shared_answers(reports: dict[str, dict]) -> list[SharedAnswer]:
    """Groups of submissions with identical wrong answers (digests) on the hidden cases of a gradient."""
    by_answer: dict[tuple, list[str]] = {}
    for name, report in reports.items():
        hidden = report.get("hidden_cases") == "included"  # else the public cases are all there is
        for ex in report.get("exercises", []):
            for check in ex.get("checks", []):
                digests = tuple(sorted((c["case"], c["answer_digest"]) for c in check.get("cases", [])
                                       if c.get("answer_digest") and not c.get("passed")
                                       and (c.get("visibility") == "hidden" or not hidden)))
                if digests:
                    gradient = check["name"] if check["name"] == "trajectory" else f"d{check['name']}"
                    by_answer.setdefault((f"{ex['id']}: {gradient}", digests), []).append(name)
    groups: dict[tuple[str, ...], list[str]] = {}
    for (gradient, _), names in by_answer.items():
        if len(set(names)) > 1:
            groups.setdefault(tuple(sorted(set(names))), []).append(gradient)
    return sorted((SharedAnswer(submissions=list(k), gradients=v) for k, v in groups.items()),
                  key=lambda g: (-len(g.gradients), -len(g.submissions), g.submissions))


def summarize(rows: list[Row], policy: LatePolicy | None = None, *, similarity: bool = True) -> Summary:
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
                for row in rows],
        nodes=class_nodes(reports), similarity=similarity, shared=shared_answers(reports) if similarity else [])


# --- HTML ----------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{border-bottom:1px solid #eee;padding:.3rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f6f6}td.num{text-align:right;white-space:nowrap}
.stats span{display:inline-block;margin-right:1.5rem}.muted{color:#777}svg text{font-size:11px;fill:#333}
.graph{overflow-x:auto}.graph svg{max-width:100%;height:auto}h3{font-size:1rem}
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


def _heat(rate: float) -> str:
    """Red (nobody) through yellow to green (everybody)."""
    low, mid, high = (228, 87, 86), (238, 202, 59), (84, 162, 75)
    a, b, t = (low, mid, rate * 2) if rate < 0.5 else (mid, high, rate * 2 - 1)
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def _class_graphs(summary: Summary) -> str:
    """Each exercise's graph as a heat map of pass rates; the nodes where the class breaks stand out."""
    from grader.outputs.graph import NO_DOT_NOTE, Look, exercise_graph, render_svg
    from grader.outputs.html_report import base_look

    by_exercise: dict[str, dict[str, NodeRate]] = {}
    for node in summary.nodes:
        by_exercise.setdefault(node.exercise, {})[node.check] = node
    parts = []
    for ex_id, rates in by_exercise.items():
        if ex_id not in EXERCISES:
            continue
        graph = exercise_graph(EXERCISES[ex_id])
        looks = {}
        for node in graph.nodes:
            rate = rates.get(node.name) if node.kind == "check" else None
            if rate is None:
                looks[node.name] = base_look(node, "the")
                continue
            lines = [f"{rate.rate:.0%} passed ({rate.passed}/{rate.total})"]
            look = Look(lines=lines, fill=_heat(rate.rate), border="#555555", classes="heat",
                        tooltip=f"{rate.label}: {rate.passed} of {rate.total} passed")
            if rate.first_to_fix:
                lines.append(f"\u25b6 first to fix for {rate.first_to_fix}")
                look.penwidth, look.border, look.classes = 3.0, "#b71c1c", "heat breaks"
                if rate.mistake:
                    look.tooltip += f"; most common mistake here: {rate.mistake[:300]}"
            looks[node.name] = look
        svg = render_svg(graph, looks, node_id=lambda name, ex_id=ex_id: f"class-{ex_id}-node-{name}")
        parts.append(f"<h3>{_e(EXERCISES[ex_id].title)}</h3>"
                     + (f'<div class="graph">{svg}</div>' if svg else f"<p class=muted>{_e(NO_DOT_NOTE)}</p>"))
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
        ("Where the class breaks (the first gradient to fix)",
         ["gradient", "passed", "first to fix for", "most common mistake there", "submissions"],
         [[n.label, f"{n.rate:.0%}", str(n.first_to_fix), n.mistake or "(no diagnosis)", str(n.mistake_count)]
          for n in sorted((n for n in summary.nodes if n.first_to_fix), key=lambda n: (-n.first_to_fix, n.label))],
         {1, 2, 4}),
        (SHARED, ["submissions", "the same wrong numbers for"],
         [[", ".join(g.submissions), ", ".join(g.gradients)] for g in summary.shared], set()),
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
        SHARED: f"<p class=muted>{_e(shared_note(summary))}</p>",
    }
    body = [f"<h1>Backprop Ninja: batch summary</h1><p class=muted>generated {_e(summary.generated_at)}</p>",
            f'<p class="stats">{"".join(stats)}</p>',
            f"<h2>Score distribution</h2>{_histogram_svg(summary)}",
            f"<h2>The class on the graph</h2><p class=muted>Each gradient coloured by the share of the class that "
            f"gets it right; a thick red border marks where submissions break first.</p>{_class_graphs(summary)}"]
    for title, headers, rows, numeric in _sections(summary):
        body.append(f"<h2>{_e(title)}</h2>{charts.get(title, '')}")
        body.append(_table(headers, rows, numeric) if rows else "<p class=muted>none</p>")
    from grader.outputs.html_report import CSP

    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
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
        if title == SHARED:
            lines += [shared_note(summary), ""]
        if not rows:
            lines.append("none")
            continue
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---:" if i in numeric else "---" for i in range(len(headers))) + "|")
        lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_summary(rows: list[Row], out: Path, policy: LatePolicy | None = None, *, similarity: bool = True) -> Path:
    """Write summary.html and summary.md into `out`; returns the HTML's path."""
    summary = summarize(rows, policy, similarity=similarity)
    write_atomically(out / "summary.md", render_markdown(summary))
    write_atomically(out / "summary.html", render_html(summary))
    return out / "summary.html"
