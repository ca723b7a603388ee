"""The instructor's summary of a batch: OUTDIR/summary.html (self-contained) and summary.md.

Rendered from the numbers of grader.batch.summary_data (built from the
gradebook's rows and their reports): the score distribution, the pass rate
of every check in backward-pass order (which gradients the class gets
wrong), the most frequent diagnosed mistakes, the slowest submissions and
the ones that failed. The class on the graph: each exercise's computation
graph (grader.outputs.graph) as a heat map of its nodes' pass rates, with
where the class breaks (the nodes that are the first to fix) and the most
common diagnosed mistake there. Shared wrong answers: groups of submissions
whose wrong gradients are numerically identical on the hidden cases where
no catalogued mistake explains them: evidence for the instructor to look
at, never a penalty; off with `grader batch --no-similarity`. The HTML has
inline CSS and SVG (no script, no network); every piece of text that a
student controls (names, messages, hints that quote their code) is escaped.
"""

import html
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from grader.batch.gradebook import Row
from grader.batch.summary_data import BINS, NodeRate, Summary, summarize
from grader.config import LatePolicy
from grader.course.registry import EXERCISES
from grader.report import write_atomically
from grader.safe_text import one_line

SHARED = "Shared wrong answers"


def shared_note(summary: Summary) -> str:
    if not summary.similarity:
        return "Not computed (switched off with --no-similarity)."
    return ("Submissions whose wrong gradients are numerically identical on the hidden cases, where no known "
            "mistake explains them. Evidence to look at, never a penalty: right answers are never compared.")


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
    drawn = []
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
        drawn.append((ex_id, graph, looks))

    def draw(job) -> str:
        ex_id, graph, looks = job
        svg = render_svg(graph, looks, node_id=lambda name: f"class-{ex_id}-node-{name}")
        return f"<h3>{_e(EXERCISES[ex_id].title)}</h3>" + (
            f'<div class="graph">{svg}</div>' if svg else f"<p class=muted>{_e(NO_DOT_NOTE)}</p>")

    with ThreadPoolExecutor(max_workers=4) as pool:  # one `dot` process per exercise, side by side
        return "".join(pool.map(draw, drawn))


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


def write_summary(rows: list[Row], out: Path, policy: LatePolicy | None = None, *, similarity: bool = True,
                  reports: Iterable[tuple[str, str]] | None = None) -> Path:
    """Write summary.html and summary.md into `out`; returns the HTML's path (`reports`: see summarize)."""
    summary = summarize(rows, policy, similarity=similarity, reports=reports)
    write_atomically(out / "summary.md", render_markdown(summary))
    write_atomically(out / "summary.html", render_html(summary))
    return out / "summary.html"
