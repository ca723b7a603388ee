"""The student's page: `grader grade SUB --html report.html`, and the same view in Jupyter.

A view of a finished Report: the score, then for each exercise its
computation graph (grader.outputs.graph) with every node coloured by its gradient's
verdict and the first one to fix marked, and every check with its `cmp`
line per public case, the counts of the hidden ones and its hints, which
open one level at a time (<details>). One self-contained file: inline CSS
and SVG, no script, and a Content-Security-Policy that forbids loading
anything, so it works from disk, in an LMS iframe or as a CI artifact.
Every string from the report is escaped.
"""

import html
from pathlib import Path

from grader.course.mlp import ATOMIC

from grader.course.registry import EXERCISES

from grader.course.spec import TRAJECTORY
from grader.outputs.graph import NO_DOT_NOTE, Look, Node, exercise_graph, render_svg
from grader.report import CheckResult, ExerciseResult, Report, write_atomically

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

# verdict -> (what the student reads, fill, border)
VERDICTS = {
    "right": ("right", "#b8e3b0", "#2e7d32"),
    "wrong": ("wrong", "#f6aaaa", "#c62828"),
    "cascade": ("right given your upstream", "#fde7a9", "#b7791f"),
    "not_attempted": ("not attempted", "#eeeeee", "#9e9e9e"),
    "not_allowed": ("not allowed", "#d9c8ef", "#5e35b1"),
}
MARK = {"right": "\u2713", "wrong": "\u2717", "cascade": "\u21b3", "not_attempted": "\u2026", "not_allowed": "\u26d4"}
LEVELS = ("a nudge: where to look", "the local rule", "the worked expression")
NOT_ATTEMPTED = {"missing", "not_implemented", "not_submitted"}

CSS = """
.bpn{font-family:system-ui,-apple-system,Segoe UI,sans-serif;color:#222;line-height:1.4}
.bpn h1{font-size:1.5rem;margin:.2rem 0}.bpn h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.bpn h3{font-size:1rem;margin:.8rem 0 .2rem}.bpn .muted{color:#666}.bpn code,.bpn pre{font-size:.85rem}
.bpn .score{font-size:1.3rem;font-weight:600}.bpn .badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;
font-size:.8rem;font-weight:600;border:1px solid}.bpn .graph{overflow-x:auto;max-width:100%;margin:.5rem 0}
.bpn .graph svg{max-width:100%;height:auto}.bpn .legend span{display:inline-block;margin-right:1rem;font-size:.85rem}
.bpn .legend i{display:inline-block;width:.9rem;height:.9rem;border:1px solid;vertical-align:middle;margin-right:.3rem}
.bpn .check{border:1px solid #ddd;border-left-width:6px;border-radius:4px;padding:.1rem .7rem;margin:.4rem 0}
.bpn .check p{margin:.25rem 0}
.bpn .check:target{outline:3px solid #1565c0}.bpn .first{box-shadow:0 0 0 2px #c62828}
.bpn table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0}.bpn td,.bpn th{border-bottom:1px solid #eee;
padding:.15rem .5rem;text-align:left;vertical-align:top}.bpn th{background:#f6f6f6}
.bpn details.hint{margin:.3rem 0 .3rem .4rem;padding-left:.6rem;border-left:3px solid #90caf9}
.bpn details.hint>summary{cursor:pointer;color:#1565c0}.bpn .fixfirst{color:#c62828;font-weight:700}
.bpn pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;white-space:pre-wrap}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _anchor(ex_id: str, name: str) -> str:
    return f"bpn-{ex_id}-{name}"


def _gradient(name: str) -> str:
    return name if name == TRAJECTORY else f"d{name}"


def verdict(ex: ExerciseResult, check: CheckResult) -> str:
    if check.status == "passed":
        return "right"
    statuses = {c.status for c in check.cases}
    if ex.status == "not_allowed" or statuses == {"not_allowed"}:
        return "not_allowed"
    if ex.status == "not_submitted" or (statuses and statuses <= NOT_ATTEMPTED):
        return "not_attempted"
    if check.cascade_of:
        return "cascade"
    return "wrong"


def first_to_fix(ex: ExerciseResult) -> CheckResult | None:
    """The first check, in backward order, that is wrong because of its own step (not a cascade)."""
    if ex.status in ("passed", "not_submitted"):
        return None
    order = {name: i for i, name in enumerate(ATOMIC)}
    own = [c for c in ex.checks if verdict(ex, c) in ("wrong", "not_allowed", "not_attempted")]
    return min(own, key=lambda c: (verdict(ex, c) == "not_attempted", order.get(c.name, len(order))), default=None)


def hint_levels(check: CheckResult) -> list[str]:
    return list(check.hint_levels) or ([check.hint] if check.hint else [])


def _public(check: CheckResult):
    return [c for c in check.cases if c.visibility == "public"]


def cmp_line(check: CheckResult) -> str:
    """The lecture's `cmp` line on the public cases: exact, approximate, the largest max diff."""
    public = _public(check)
    exact = [c.exact for c in public if c.exact is not None]
    diffs = [c.max_abs_diff for c in public if c.max_abs_diff is not None]
    ex = ("yes" if all(exact) else "no") if exact else "-"
    approx = {"passed": "yes", "partial": "some", "failed": "no"}[check.status]
    return f"exact {ex} | approx {approx} | maxdiff {max(diffs):.1e}" if diffs else f"exact {ex} | approx {approx}"


def _counts(check: CheckResult) -> str:
    public, hidden = _public(check), [c for c in check.cases if c.visibility == "hidden"]
    parts = [f"{sum(c.passed for c in public)}/{len(public)} public"]
    if hidden:
        parts.append(f"{sum(c.passed for c in hidden)}/{len(hidden)} hidden")
    return ", ".join(parts)


# --- the graph --------------------------------------------------------------------------------

def base_look(node: Node, whose: str = "your") -> Look:
    """Nodes without a verdict: computed on the way, given, the loss, data."""
    if node.kind == "check":  # a check the report does not have
        return Look(lines=["not graded"], style="filled,dashed", fill="#ffffff")
    if node.kind == "inner":
        return Look(lines=[f"inside {whose} function"], style="dashed", border="#9e9e9e",
                    tooltip=f"{node.expr}: computed on the way, not graded on its own")
    if node.kind == "given":
        return Look(lines=["given"], fill="#e3f2fd", border="#1565c0", tooltip=f"d{node.name} is an input")
    if node.kind == "loss":
        return Look(fill="#e3f2fd", border="#1565c0", tooltip=node.expr)
    return Look(fill="#f5f5f5", border="#9e9e9e", tooltip=f"{node.name}: data, no gradient")


def graph_svg(ex: ExerciseResult) -> str | None:
    definition = EXERCISES.get(ex.id)
    if definition is None:
        return None
    graph = exercise_graph(definition)
    checks = {c.name: c for c in ex.checks}
    first = first_to_fix(ex)
    looks = {}
    for node in graph.nodes:
        check = checks.get(node.name) if node.kind == "check" else None
        if check is not None:
            v = verdict(ex, check)
            label, fill, border = VERDICTS[v]
            lines = [f"{MARK[v]} {label}" if v != "cascade" else f"{MARK[v]} fix d{check.cascade_of} first"]
            lines.append(cmp_line(check))
            levels = hint_levels(check) if check.status != "passed" else []
            look = Look(lines=lines, fill=fill, border=border, href=f"#{_anchor(ex.id, node.name)}",
                        tooltip=f"{node.expr or node.name}: {label}" + (f". {levels[0][:300]}" if levels else ""),
                        classes=f"verdict-{v}")
            if v == "cascade":
                look.style = "filled,dashed"
            if first is not None and check.name == first.name:
                look.lines.insert(0, "\u25b6 FIX THIS FIRST")
                look.penwidth, look.border, look.classes = 4.0, "#b71c1c", look.classes + " first-to-fix"
        else:
            look = base_look(node)
        looks[node.name] = look
    return render_svg(graph, looks, node_id=lambda name: f"bpn-{ex.id}-node-{name}")


def _legend() -> str:
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{fill};border-color:{border}"></i>{_e(label)}</span>'
        for label, fill, border in VERDICTS.values()) + '<span class="fixfirst">\u25b6 fix this first</span></p>'


# --- the checks -------------------------------------------------------------------------------

def hints_html(check: CheckResult) -> str:
    """Nested <details>: each level opens only after the one before it."""
    levels = hint_levels(check)
    if not levels:
        return ""
    out = ""
    for i in reversed(range(len(levels))):
        what = LEVELS[i] if len(levels) > 1 and i < len(LEVELS) else "hint"
        title = f"Hint {i + 1} of {len(levels)}: {what}" if len(levels) > 1 else "Hint"
        out = (f'<details class="hint level-{i + 1}"{" open" if i == 0 else ""}><summary>{_e(title)}</summary>'
               f'<p>{_e(levels[i])}</p>{out}</details>')
    return f'<div class="hints">{out}</div>'


def _cases_table(check: CheckResult) -> str:
    rows = []
    for c in _public(check):
        shapes = (f"{tuple(c.got_shape) if c.got_shape is not None else '-'} / "
                  f"{tuple(c.expected_shape) if c.expected_shape is not None else '-'}")
        rows.append([c.case, "yes" if c.exact else "no" if c.exact is not None else "-",
                     "yes" if c.passed else "no",
                     f"{c.max_abs_diff:.2e}" if c.max_abs_diff is not None else "-",
                     f"{c.rel_err:.1e}" if c.rel_err is not None else "-", shapes.replace(",)", ")"),
                     c.message + (f" ({c.note})" if c.note else "")])
    if not rows:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("case", "exact", "approx", "maxdiff", "rel err",
                                             "shape (yours / expected)", "message"))
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="cases"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def check_html(ex: ExerciseResult, check: CheckResult, first: CheckResult | None) -> str:
    v = verdict(ex, check)
    label, fill, border = VERDICTS[v]
    is_first = first is not None and first.name == check.name
    definition = EXERCISES.get(ex.id)
    node = next((n for n in exercise_graph(definition).nodes if n.name == check.name), None) if definition else None
    expr = node.expr if node else ""
    parts = [f'<section class="check verdict-{v}{" first" if is_first else ""}" id="{_anchor(ex.id, check.name)}" '
             f'style="border-left-color:{border}">',
             f'<h3>{"<span class=fixfirst>&#9654; fix this first: </span>" if is_first else ""}'
             f'<code>{_e(_gradient(check.name))}</code> '
             f'<span class="badge" style="background:{fill};border-color:{border}">{_e(label)}</span> '
             f'<span class="muted">{check.score:.3g}/{check.max_score:.3g} points, {_e(_counts(check))}</span></h3>']
    if check.status == "passed":  # one line: the cmp line is all there is to say
        parts.append(f'<p class="cmp"><code>{_e(cmp_line(check))}</code></p></section>')
        return "".join(parts)
    if expr:
        parts.append(f'<p class="muted">forward: <code>{_e(expr)}</code></p>')
    parts.append(f'<p class="cmp"><code>{_e(cmp_line(check))}</code></p>')
    if v == "cascade":
        parts.append(f'<p class="cascade">This step is right, given your own '
                     f'<code>d{_e(check.cascade_of)}</code>: fix <code>d{_e(check.cascade_of)}</code> first.</p>')
    parts.append(_cases_table(check))
    hidden = [c for c in check.cases if c.visibility == "hidden"]
    if hidden:
        parts.append(f'<p class="hidden">Hidden cases: {sum(c.passed for c in hidden)} of {len(hidden)} passed.</p>')
    if check.message and not check.cases:
        parts.append(f"<p>{_e(check.message)}</p>")
    parts.append(hints_html(check))
    parts.append("</section>")
    return "".join(parts)


def exercise_html(ex: ExerciseResult, *, graph: bool = True) -> str:
    """One exercise: its graph, legend and checks (an HTML fragment, also shown in Jupyter)."""
    first = first_to_fix(ex)
    parts = [f'<h2 id="{_anchor(ex.id, "exercise")}">{_e(ex.title)} '
             f'<span class="score">{ex.score:.4g}/{ex.max_score:.4g}</span></h2>',
             f'<p><code>{_e(ex.file)}</code>: <code>{_e(ex.function)}</code> &mdash; {_e(ex.message)}</p>']
    if first is not None:
        levels = hint_levels(first)
        parts.append(f'<p class="fixfirst">&#9654; First to fix: <a href="#{_anchor(ex.id, first.name)}">'
                     f'<code>{_e(_gradient(first.name))}</code></a></p>'
                     + (f'<p class="firsthint">{_e(levels[0])}</p>' if levels else ""))
    if ex.traceback:
        parts.append(f"<details><summary>traceback</summary><pre>{_e(ex.traceback)}</pre></details>")
    if graph and ex.status != "not_submitted":  # nothing to colour
        svg = graph_svg(ex)
        if svg:
            parts.append(f'<div class="graph" id="{_anchor(ex.id, "graph")}">{svg}</div>{_legend()}')
        elif ex.id in EXERCISES:
            parts.append(f'<p class="muted nodot">{_e(NO_DOT_NOTE)}</p>')
    order = {name: i for i, name in enumerate(ATOMIC)}
    for check in sorted(ex.checks, key=lambda c: order.get(c.name, len(order))):
        parts.append(check_html(ex, check, first))
    return f'<section class="exercise" id="{_anchor(ex.id, "section")}">' + "".join(parts) + "</section>"


def fragment(exercises: list[ExerciseResult]) -> str:
    """Exercises with the page's style, for IPython.display.HTML."""
    return f'<div class="bpn"><style>{CSS}</style>' + "".join(exercise_html(ex) for ex in exercises) + "</div>"


def render_page(report: Report) -> str:
    who = report.submission.student_id or report.submission.path
    head = [f"<h1>Backprop Ninja: {_e(who)}</h1>",
            f'<p class="score">Score: {report.score:.4g} / {report.max_score:.4g}</p>',
            f'<p class="muted">submission <code>{_e(report.submission.path)}</code> ({_e(report.submission.kind)}), '
            f"graded {_e(report.finished_at)} by grader {_e(report.grader_version)}; hidden cases "
            f"{_e(report.hidden_cases.replace('_', ' '))}; isolation {_e(report.isolation.level)}</p>"]
    rows = "".join(f'<tr><td><a href="#{_anchor(ex.id, "exercise")}">{_e(ex.title)}</a></td>'
                   f"<td>{ex.score:.4g}/{ex.max_score:.4g}</td><td>{_e(ex.status)}</td></tr>" for ex in report.exercises)
    head.append(f"<table><thead><tr><th>exercise</th><th>score</th><th>status</th></tr></thead><tbody>{rows}"
                "</tbody></table>")
    public = [c for c in report.cases if c.visibility == "public"]
    hidden = len(report.cases) - len(public)
    head.append("<p class=muted>cases: " + "; ".join(f"{_e(c.name)} ({_e(c.description or '')})" for c in public)
                + (f"; and {hidden} hidden" if hidden else "") + "</p>")
    for note in report.notes:
        head.append(f"<p class=muted>note: {_e(note)}</p>")
    for finding in report.integrity:
        where = f"{finding.file}:{finding.line}" if finding.line else finding.file
        head.append(f"<p class=fixfirst>not allowed: {_e(where)}: {_e(finding.message)}</p>")
    body = "".join(head) + "".join(exercise_html(ex) for ex in report.exercises)
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>Backprop Ninja report: {_e(who)}</title><style>body{{margin:1.5rem auto;max-width:68rem;"
            f"padding:0 1rem}}{CSS}</style></head><body><div class=bpn>{body}</div></body></html>\n")


def write_page(report: Report, path: Path) -> None:
    write_atomically(Path(path), render_page(report))
