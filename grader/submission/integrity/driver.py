"""The integrity scan of a submission: every file, and which exercises each finding costs.

A file's findings cost the exercise whose file it is and every exercise that imports it (directly or
through other files); exercise 4 of a lecture notebook is scanned on exactly the statements that run.
"""

import ast
import threading

from grader.course.registry import EXERCISES, graded_by_training
from grader.submission.integrity.rules import Finding, message
from grader.submission.integrity.scanner import Defined, Scanner, shadows

MAX_PER_FILE = 20


def _parse(source: str):
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # the worker reports why it cannot be imported


def walk(tree: ast.AST) -> list:
    """`list(ast.walk(tree))`, the same nodes in the same order, in half the time (no generator per node)."""
    found, i = [tree], 0
    while i < len(found):
        node = found[i]
        i += 1
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, ast.AST):
                found.append(value)
            elif isinstance(value, list):
                found.extend(item for item in value if isinstance(item, ast.AST))
    return found


RECENT = 32  # sources whose nodes are kept: a submission's files, read by the scan and then the sharing check
RECENT_MAX_CHARS = 64 << 10  # a larger file's tree is not kept (a student's file is a few KiB; trees weigh more)
RECENT_TOTAL_CHARS = 256 << 10  # all the kept sources together: a tree weighs about 25 times its text (~6 MB)
_recent: dict[str, list | None] = {}
_recent_lock = threading.Lock()


def source_nodes(source: str) -> list | None:
    """Every node of the source's tree in `ast.walk` order (the module first), or None if it does not parse.

    The last RECENT sources (of at most RECENT_MAX_CHARS each and RECENT_TOTAL_CHARS in all: memory stays bounded)
    are kept: the scan and then the worker's sharing check (grader.sandbox.sharing) read the same files of a
    submission, parsed once.
    Neither changes a tree.
    """
    with _recent_lock:
        if source in _recent:
            return _recent[source]
    tree = _parse(source)
    found = walk(tree) if tree is not None else None
    if len(source) > RECENT_MAX_CHARS:
        return found
    with _recent_lock:
        while _recent and (len(_recent) >= RECENT or sum(map(len, _recent)) + len(source) > RECENT_TOTAL_CHARS):
            _recent.pop(next(iter(_recent)))  # the oldest
        _recent[source] = found
    return found


def _imports(nodes: list) -> set[str]:
    """Top-level module names a file imports."""
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level > 0:  # from . import helper
                names.update(alias.name for alias in node.names)
                if node.module:
                    names.add(node.module.split(".")[0])
    return names


def _importers(nodes: dict[str, list]) -> dict[str, set[str]]:
    """File -> the exercise ids that import it, directly or through other files."""
    modules = {name.removesuffix(".py"): name for name in nodes}
    edges = {name: {modules[m] for m in _imports(found) if m in modules} for name, found in nodes.items()}
    result = {name: set() for name in nodes}
    for ex in EXERCISES.values():
        if ex.file not in nodes:
            continue
        seen, stack = set(), [ex.file]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(edges.get(current, ()))
        for name in seen:
            result[name].add(ex.id)
    return result




def scan(files: dict[str, str], allow: list[str] | tuple[str, ...] = ()) -> list[Finding]:
    """Every finding in a submission (file name -> source), one per exercise it costs."""
    return _scan_nodes({name: listed for name, source in sorted(files.items())
                        if name.endswith(".py") and (listed := source_nodes(source)) is not None}, allow)


CELL_LINES = 1_000_000  # scan_train numbers a cell's line L as cell * CELL_LINES + L


def scan_train(plan, allow: list[str] | tuple[str, ...] = ()) -> list[Finding]:
    """Exercise 4 of a lecture notebook (a grader.submission.lecture.train.TrainPlan): the same check, on exactly what runs.

    The prelude's and set-up's statements and the loop's cell without the statements that are not run
    (`loss.backward()`, `p.grad = None`, ...: plan.skips) form one file, `train.py`; each finding names its cell
    and line. A helper function of the prelude that nothing running calls (a `check` that reads `.grad`) is only
    defined: of it, what runs at definition (decorators, defaults) is checked."""
    body = []
    for entry in [*plan.prelude, *plan.setup]:
        wanted = {tuple(position) for position in entry.get("run", [])}
        tree = _parse(entry["source"])
        if tree is not None and wanted:
            body += [ast.increment_lineno(n, entry["cell"] * CELL_LINES)
                     for n in tree.body if (n.lineno, n.col_offset) in wanted]
    tree = _parse(plan.source)
    unit = next((n for n in (tree.body if tree else []) if (n.lineno, n.col_offset) == tuple(plan.unit)), None)
    if unit is not None:
        skipped = {(s.line, s.col) for s in plan.skips}
        for node in ast.walk(unit):
            for field, value in ast.iter_fields(node):
                if isinstance(value, list) and any(isinstance(v, ast.stmt) for v in value):
                    kept = [v for v in value if not (isinstance(v, ast.stmt) and (v.lineno, v.col_offset) in skipped)]
                    setattr(node, field, kept or [ast.Pass(lineno=node.lineno, col_offset=node.col_offset)])
        body.append(ast.increment_lineno(unit, plan.cell * CELL_LINES))
    _stub_uncalled(body)
    exercise = graded_by_training()
    file = exercise.file
    findings = _scan_nodes({file: walk(ast.Module(body=body, type_ignores=[]))}, allow)
    for finding in findings:
        if finding.line:
            cell, line = divmod(finding.line, CELL_LINES)
            old = f"{finding.file} line {finding.line}"
            finding.file, finding.line = f"cell {cell}", line
            finding.message = finding.message.replace(old, f"cell {cell}, line {line}", 1)
    return [f for f in findings if f.exercise == exercise.id]


def _stub_uncalled(body: list) -> None:
    """Empty the bodies of top-level functions that no other statement (nor a used function) names."""
    functions = {n.name: n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}

    def names(nodes) -> set[str]:
        return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}

    used = names(n for n in body if n.__class__ not in (ast.FunctionDef, ast.AsyncFunctionDef))
    used |= names(d for f in functions.values() for d in [*f.decorator_list, f.args])
    todo = [name for name in used if name in functions]
    while todo:
        for name in names(functions[todo.pop()].body) - used:
            used.add(name)
            if name in functions:
                todo.append(name)
    for name, node in functions.items():
        if name not in used:
            node.body = [ast.Pass(lineno=node.lineno, col_offset=node.col_offset)]


def _scan_nodes(nodes: dict[str, list], allow) -> list[Finding]:
    """The findings of files given as their trees' nodes (`walk` order: each list starts with its module)."""
    defined = {name: Defined(listed[0], listed) for name, listed in nodes.items()}
    own = {ex.module: {ex.function} for ex in EXERCISES.values()}  # the contract's files, submitted or not
    own.update({name.removesuffix(".py"): d.top | d.attributes for name, d in defined.items()
                if not shadows(name.removesuffix(".py"))})
    owned = set().union(*(d.attributes for d in defined.values())) | {ex.function for ex in EXERCISES.values()}
    importers = _importers(nodes)
    findings = []
    for name in nodes:
        scanner = Scanner(own, owned, defined[name], set(allow))
        scanner.run(nodes[name])
        hits = sorted(set(scanner.hits))[:MAX_PER_FILE]
        own_ex = next((ex.id for ex in EXERCISES.values() if ex.file == name), None)
        if shadows(name.removesuffix(".py")) and importers.get(name) and "shadowing" not in allow:
            hits.insert(0, (0, "shadowing", name))
        for line, rule, construct in hits:
            exercises = sorted(importers.get(name, ())) or [None]
            for ex_id in exercises:
                via = None if ex_id is None or ex_id == own_ex else EXERCISES[ex_id].file
                findings.append(Finding(ex_id, name, line or None, rule, construct,
                                        message(name, line, construct, rule, via)))
    return findings
