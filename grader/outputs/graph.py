"""The computation graph of an exercise, as the lecture draws it with torchviz, laid out by Graphviz.

The graph is derived, not drawn by hand: the forward pass in `grader.course.mlp`
is parsed (each `name = expression` line is a node, the forward tensors it
reads are its inputs), and an exercise keeps the part of it between its
checks and the gradient it is given (`dhpreact`, `demb`) or the loss. So
an exercise a course adds to `EXERCISES` gets its graph too; a check that
is not a tensor of the forward pass becomes a node of its own.

Layout and SVG come from Graphviz's `dot` (the `graphviz` Python package
drives it). Without `dot` on the PATH, `render_svg` returns None and the
pages show their tables with a note.
"""

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache

from grader.course import mlp
from grader.course.mlp import FORWARD_ARGS, PARAMS
from grader.course.spec import TRAJECTORY, Exercise

LOSS = "loss"
NO_DOT_NOTE = ("The graph needs Graphviz's `dot` (Debian: apt-get install graphviz), which is not "
               "installed here: the checks are listed below.")


@dataclass(frozen=True)
class Node:
    name: str
    kind: str           # "check" (graded), "inner" (computed on the way, not graded), "input", "given", "loss"
    expr: str = ""      # the forward line that computes it, e.g. "probs = counts * counts_sum_inv"


@dataclass(frozen=True)
class Graph:
    exercise: str
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]   # forward direction: (input, output)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    @property
    def checks(self) -> list[str]:
        return [n.name for n in self.nodes if n.kind == "check"]


@lru_cache(maxsize=1)
def forward_structure() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (forward line, forward tensors it reads), from the source of `mlp.forward`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(mlp.forward)))
    known = set(FORWARD_ARGS) | {LOSS}
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for stmt in ast.walk(tree):
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            continue
        name = stmt.targets[0].id
        if name not in known or name in PARAMS:
            continue
        reads = []
        for sub in ast.walk(stmt.value):
            if isinstance(sub, ast.Name) and sub.id in known and sub.id not in reads:
                reads.append(sub.id)
        out[name] = (f"{name} = {ast.unparse(stmt.value)}", tuple(reads))
    return out


def _reaches(start: str, goals: set[str], children: dict[str, set[str]]) -> set[str]:
    """The nodes on a forward path from `start` to any of `goals` (both ends included)."""
    memo: dict[str, bool] = {}

    def ok(name: str) -> bool:
        if name not in memo:  # the forward pass is a DAG: no cycle to guard against
            memo[name] = name in goals or any([ok(c) for c in children.get(name, ())])  # a list: visit all
        return memo[name]

    return {name for name, good in memo.items() if good} if ok(start) else set()


@lru_cache(maxsize=None)
def exercise_graph(ex: Exercise) -> Graph:
    structure = forward_structure()
    children: dict[str, set[str]] = {}
    for name, (_, reads) in structure.items():
        for r in reads:
            children.setdefault(r, set()).add(name)
    given = [a[1:] for a in ex.tensor_args if a.startswith("d") and a[1:] in structure]
    sinks = set(given) or {LOSS}
    checks = list(ex.gradient_checks)
    keep: set[str] = set()
    for check in checks:
        keep |= _reaches(check, sinks, children)
    # the leaves torchviz would draw: what the kept steps read that is not kept (Xb, Yb, bngain, ...)
    data = set(FORWARD_ARGS) - set(structure) - set(PARAMS)  # Xb, Yb: inputs that have no gradient
    leaves = {r for name in keep if name in structure for r in structure[name][1]
              if name not in checks or r in data} - keep
    order = [*FORWARD_ARGS, LOSS]
    nodes = []
    for name in sorted(keep | leaves | set(checks), key=lambda n: order.index(n) if n in order else -1):
        if name in checks:
            kind = "check"
        elif name in sinks:
            kind = "loss" if name == LOSS else "given"
        else:
            kind = "inner" if name in keep else "input"
        nodes.append(Node(name, kind, structure[name][0] if name in structure else ""))
    names = {n.name for n in nodes}
    edges = [(r, name) for name in names - leaves if name in structure for r in structure[name][1] if r in names]
    if TRAJECTORY in ex.checks:  # the SGD steps read every parameter's gradient
        nodes.append(Node(TRAJECTORY, "check", "K steps of SGD with your gradients, against autograd's"))
        edges += [(p, TRAJECTORY) for p in checks if p in PARAMS]
    order = {n.name: i for i, n in enumerate(nodes)}
    return Graph(ex.id, tuple(nodes), tuple(sorted(edges, key=lambda e: (order[e[0]], order[e[1]]))))


# ---------------------------------------------------------------------------
# Layout: Graphviz draws the graph; the caller decides each node's look.


@dataclass
class Look:
    """How one node is drawn: the text lines under its name, colours, a link and classes for the page."""

    lines: list[str] = field(default_factory=list)
    fill: str = "#ffffff"
    border: str = "#666666"
    style: str = "filled"
    penwidth: float = 1.0
    tooltip: str = ""
    href: str = ""
    classes: str = ""


def _dot_text(text: str) -> str:
    """Literal text for dot: backslashes are escapes to it (\\n, \\N, ...), and <...> an HTML label."""
    import graphviz

    return graphviz.nohtml(text.replace("\\", "\\\\"))


@lru_cache(maxsize=1)
def have_dot() -> bool:
    import shutil

    return shutil.which("dot") is not None


def render_svg(graph: Graph, looks: dict[str, Look], *, node_id=lambda name: name) -> str | None:
    """The graph as an inline SVG element (no XML prolog), or None when `dot` is missing."""
    if not have_dot():
        return None
    import graphviz

    dot = graphviz.Digraph(graph_attr={"rankdir": "TB", "nodesep": "0.25", "ranksep": "0.3",
                                       "bgcolor": "transparent", "fontname": "Helvetica"},
                           node_attr={"shape": "box", "fontname": "Helvetica", "fontsize": "11",
                                      "margin": "0.12,0.05"},
                           edge_attr={"arrowsize": "0.6", "color": "#888888"})
    for node in graph.nodes:
        look = looks.get(node.name, Look())
        title = node.name if node.name == TRAJECTORY or node.kind in ("input", "loss") else f"d{node.name}"
        label = "\n".join([title, *look.lines])
        attrs = {"label": _dot_text(label), "fillcolor": look.fill, "color": look.border, "style": look.style,
                 "penwidth": str(look.penwidth), "id": node_id(node.name),
                 "tooltip": _dot_text(look.tooltip or node.expr or node.name)}
        if node.kind == "input":
            attrs.update(shape="ellipse")
        if look.href:
            attrs["href"] = look.href
        if look.classes:
            attrs["class"] = look.classes
        dot.node(node.name, **attrs)
    for a, b in graph.edges:
        dot.edge(a, b, **({"style": "dashed"} if b == TRAJECTORY else {}))
    try:
        svg = dot.pipe(format="svg", encoding="utf-8")
    except Exception:  # noqa: BLE001 - a broken dot install must not cost the page
        return None
    start = svg.find("<svg")
    if start < 0:
        return None
    # inline in HTML the xlink namespace needs no declaration, and dot's comments only add weight
    svg = re.sub(r"<!--.*?-->\n?", "", svg[start:], flags=re.S)
    svg = svg.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    return svg.replace("&#45;", "-")  # dot writes every hyphen as a character reference
