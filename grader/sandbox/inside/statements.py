"""What a notebook statement does, read from its syntax tree: shared by the planner and the worker.

The lecture layout's planner (`grader.submission.lecture`) marks statements by their position
(line, column) and the worker (`grader.sandbox.inside.execute`) runs exactly those, so both
must cut a cell into statements the same way: `units` is that one rule. The other helpers say
which variables a statement binds and which of the student's names look like an answer's.

Imports only the standard library: it is staged into the sandbox.
"""

import ast
import difflib
import re

NO_GRAD = {"no_grad", "inference_mode"}

# Suffixes students add to an answer's name for exercises 2 and 3 (dlogits_fast, dhprebn_fast).
SUFFIX = re.compile(r"^(d[A-Za-z0-9]+?)(?:_?(?:fast|manual|quick|onego|one_go|1go|simple|simplified|ex\d|v\d|\d))$")


def _is_no_grad_block(node) -> bool:
    """`with torch.no_grad():` (or inference_mode): the grader never builds a graph, so only its body matters."""
    return isinstance(node, ast.With) and all(
        isinstance(item.context_expr, ast.Call) and isinstance(item.context_expr.func, (ast.Attribute, ast.Name))
        and getattr(item.context_expr.func, "attr", getattr(item.context_expr.func, "id", "")) in NO_GRAD
        and item.optional_vars is None for item in node.items)


def units(body: list) -> list:
    """A cell's statements as the grader runs them: top level, with `torch.no_grad()` blocks opened up.

    Used by the planner and by the worker alike, so a position (line, column) names the same statement.
    """
    out = []
    for node in body:
        if _is_no_grad_block(node):
            out += units(node.body)
        else:
            out.append(node)
    return out


def names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def attrs(node) -> set[str]:
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def loads(node) -> set[str]:
    """The variables a statement reads."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def assigned_names(node) -> set[str]:
    """Variables a statement binds or changes in place (`dC[ix] += ...`, `dC.index_add_(...)`)."""
    cached = getattr(node, "_grader_assigned", None)  # planning asks this many times of each statement
    if cached is not None:
        return set(cached)
    found = _assigned_names(node)
    node._grader_assigned = frozenset(found)
    return found


def _assigned_names(node) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            found.add(sub.id)
        elif isinstance(sub, (ast.Subscript, ast.Attribute)) and isinstance(sub.ctx, ast.Store):
            base = sub.value
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                found.add(base.id)
        elif (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
              and sub.func.attr.endswith("_") and isinstance(sub.func.value, ast.Name)):
            found.add(sub.func.value.id)  # in-place tensor methods: index_add_, zero_, ...
    return found


def strip_suffix(name: str) -> str:
    """`dlogits_fast` -> `dlogits`: the name without a suffix students add (itself otherwise)."""
    match = SUFFIX.match(name)
    return match.group(1) if match else name


def near_matches(name: str, candidates) -> list[str]:
    """Variables whose names look like a typo of `name` (dlogits_maxes for dlogit_maxes)."""
    lowered = {c.lower(): c for c in candidates if c != name}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=2, cutoff=0.8)
    return [lowered[h] for h in hits]


def answer_candidates(name: str, defined, answers) -> list[str]:
    """Variables that look like the answer `name` under another spelling: dlogits_fast, dbhprebn, dlogits_maxes.

    `defined` are the d... variables the cells defined, `answers` all the exercise's answer names."""
    pool = [d for d in defined if d not in answers and d != name]
    hits = [d for d in pool if strip_suffix(d) == name]
    lowered = {d.lower(): d for d in pool}
    hits += [lowered[h] for h in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.8)
             if lowered[h] not in hits]
    return hits
