"""Reading a student notebook: the exercise code it holds, as the contract's .py files.

A notebook is only read here, never run (running it is `grader.sandbox.notebook_run`).
Three layouts are recognised, in this order:

- `tagged`: the release notebook; a code cell tagged with an exercise id
  (`atomic`, `cross_entropy`, ...) holds that exercise's function;
- `functions`: no tags, but code cells define the contract's functions
  (`def backward_atomic(...)`); the last definition wins, as when the
  notebook is run top to bottom;
- `lecture`: the lecture's own notebook, found by what its cells compute
  (`# Exercise N` headers are hints; see `grader.submission.lecture`).

For the first two, each exercise becomes a .py file made of the function's
cell (its imports, functions and classes, and the assignments they use) plus
what those need from other cells (imports, functions, classes, constants).
Other top-level code (checks, prints, training) is left out, so the files
are graded exactly like submitted .py files. Outputs stored in the notebook
are ignored. Cells are read as IPython read them (grader.submission.cells): IPython syntax
(`%magic`, `!shell`, `x?`) becomes `pass`.
"""

import ast
import builtins
import symtable
from dataclasses import dataclass, field

from grader.course.registry import EXERCISES
from grader.safe_text import valid
from grader.submission.cells import Cell, NotebookError, parse_cells

BUILTINS = set(dir(builtins)) | {"__file__", "__name__", "__builtins__", "__doc__"}


# ---------------------------------------------------------------------------
# Top-level statements, what they bind and what they need

@dataclass
class Stmt:
    cell: Cell
    node: ast.stmt
    start: int
    end: int
    kind: str                  # future | import | def | assign | other
    binds: set[str]
    needs: set[str]
    constant: bool = False     # assignments: the value is made of literals only

    @property
    def key(self) -> tuple[int, int]:
        return (self.cell.number, self.start)


def _target_names(target) -> set[str] | None:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        names = set()
        for elt in target.elts:
            sub = _target_names(elt.value if isinstance(elt, ast.Starred) else elt)
            if sub is None:
                return None
            names |= sub
        return names
    return None


def _is_constant(node) -> bool:
    return all(isinstance(n, (ast.Constant, ast.Tuple, ast.List, ast.UnaryOp, ast.BinOp, ast.unaryop,
                              ast.operator, ast.Load)) for n in ast.walk(node))


def free_names(node: ast.AST) -> set[str]:
    """Global names a statement reads (its own bindings and builtins excluded)."""
    try:
        table = symtable.symtable(ast.unparse(node), "<cell>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names: set[str] = set()

    def visit(t, top: bool) -> None:
        for sym in t.get_symbols():
            if not sym.is_referenced():
                continue
            if top and not (sym.is_assigned() or sym.is_imported()):
                names.add(sym.get_name())
            elif not top and sym.is_global():
                names.add(sym.get_name())
        for child in t.get_children():
            visit(child, False)

    visit(table, True)
    return names - BUILTINS


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)  # statements of kind "def"


def statements(cell: Cell) -> list[Stmt]:
    """The cell's top-level statements, analysed once per cell (each exercise's file asks again)."""
    if cell.statements is None:
        cell.statements = _analyse(cell)
    return cell.statements


def _analyse(cell: Cell) -> list[Stmt]:
    if cell.tree is None:
        return []
    out = []
    for node in cell.tree.body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        binds: set[str] = set()
        constant = False
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            kind = "future"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            kind = "import"
            for alias in node.names:
                if alias.name != "*":
                    binds.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, DEFINITIONS):
            kind, binds = "def", {node.name}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found = [_target_names(t) for t in targets]
            if all(f is not None for f in found):
                kind = "assign"
                binds = set().union(*found)
                constant = _is_constant(node.value)
            else:
                kind = "other"
        else:
            kind = "other"
        out.append(Stmt(cell, node, start, node.end_lineno or node.lineno, kind, binds,
                        free_names(node) - binds, constant))
    return out


# ---------------------------------------------------------------------------
# Exercise files from a tagged or plain notebook

@dataclass
class Origin:
    """Where the lines of a generated file come from: (file line, cell, cell line, count) spans."""
    cells: list[int]
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)

    def locate(self, line: int) -> tuple[int, int] | None:
        for start, cell, cell_line, count in self.spans:
            if start <= line < start + count:
                return cell, cell_line + line - start
        return None


def _tagged(cells: list[Cell], ex) -> list[Cell]:
    names = {ex.id, ex.module, ex.function}
    return [c for c in cells if c.kind == "code" and names & set(c.tags)]


def _defines(cell: Cell, function: str) -> bool:
    """Whether the cell defines `function` at top level (a def statement of `statements`, without analysing the
    rest: a lecture-format notebook defines none, and needs no other analysis from here)."""
    return cell.tree is not None and any(isinstance(n, DEFINITIONS) and n.name == function for n in cell.tree.body)


def _ranges(lines: list[int]) -> str:
    spans, start, prev = [], None, None
    for line in sorted(set(lines)):
        if start is None:
            start = prev = line
        elif line == prev + 1:
            prev = line
        else:
            spans.append((start, prev))
            start = prev = line
    if start is not None:
        spans.append((start, prev))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def build_file(ex, chosen: list[Cell], cells: list[Cell], nb_name: str) -> tuple[str, Origin, list[str]]:
    """The .py source of one exercise from its cell(s), plus what it needs from the rest."""
    notes = []
    own = [s for c in chosen for s in statements(c)]
    chosen_numbers = {c.number for c in chosen}
    first = min(chosen_numbers)
    others = [s for c in cells if c.kind == "code" and c.number not in chosen_numbers for s in statements(c)
              if s.kind in ("future", "import", "def") or (s.kind == "assign" and s.constant)]
    selected = {id(s): s for s in own if s.kind in ("future", "import", "def")}
    wanted = [n for s in selected.values() for n in s.needs]
    unresolved = set()
    seen = set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        if any(name in s.binds for s in selected.values()):
            continue
        candidates = [s for s in own if name in s.binds]
        if not candidates:
            before = [s for s in others if name in s.binds and s.cell.number < first]
            after = [s for s in others if name in s.binds and s.cell.number > first]
            candidates = before[-1:] or after[:1]
        if not candidates:
            unresolved.add(name)
            continue
        pick = candidates[-1]
        selected[id(pick)] = pick
        wanted += list(pick.needs)

    for cell in chosen:
        mine = [line for s in own if s.cell is cell and id(s) not in selected for line in range(s.start, s.end + 1)]
        if mine:
            notes.append(f"cell {cell.number}: code outside the functions (line {_ranges(mine)}) "
                         "is not run by the grader")
    if unresolved:
        computed = sorted(n for n in unresolved
                          if any(n in s.binds for c in cells if c.kind == "code" for s in statements(c)))
        missing = sorted(unresolved - set(computed))
        if computed:
            notes.append(f"{ex.function} uses {', '.join(computed)}, computed in another cell: the grader takes only "
                         "imports, functions, classes and constants from other cells, so pass it in or compute it "
                         "inside the function")
        if missing:
            notes.append(f"{ex.function} uses {', '.join(missing)}, which no cell of the notebook defines")

    ordered = sorted(selected.values(), key=lambda s: (s.kind != "future", s.key))
    groups: list[list[Stmt]] = []
    for s in ordered:
        if groups and groups[-1][0].cell is s.cell:
            groups[-1].append(s)
        else:
            groups.append([s])
    out = [f"# Generated by the grader from {nb_name}: the cells of exercise {ex.id!r} and what they use.", ""]
    origin = Origin(cells=sorted(chosen_numbers))
    for group in groups:
        cell = group[0].cell
        out.append(f"# --- cell {cell.number} ---")
        for start, end in _spans(sorted({line for s in group for line in range(s.start, s.end + 1)})):
            origin.spans.append((len(out) + 1, cell.number, start, end - start + 1))
            out += cell.lines[start - 1:end]
        out.append("")
    if not any(ex.function in s.binds for s in selected.values()):
        notes.append(f"no cell defines {ex.function}")
    return "\n".join(out) + "\n", origin, notes


def _spans(lines: list[int]) -> list[tuple[int, int]]:
    spans = []
    for line in lines:
        if spans and line == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], line)
        else:
            spans.append((line, line))
    return spans


def _broken_file(ex, cell: Cell, nb_name: str) -> tuple[str, Origin, list[str]]:
    """A cell that does not parse: graded as is, so the student sees the syntax error and its line."""
    header = [f"# Generated by the grader from {nb_name}: cell {cell.number} of exercise {ex.id!r}.", "",
              f"# --- cell {cell.number} ---"]
    origin = Origin(cells=[cell.number], spans=[(len(header) + 1, cell.number, 1, len(cell.lines))])
    return "\n".join(header + cell.lines) + "\n", origin, [f"cell {cell.number} does not parse: {cell.error}"]


# ---------------------------------------------------------------------------
# The submission

@dataclass
class NotebookSubmission:
    name: str                              # file name, for messages
    format: str                            # tagged | functions | lecture
    data: bytes                            # the notebook as submitted (for execution)
    cells: list[Cell]
    exercise_cells: dict[str, list[int]] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)   # file name -> origin
    notes: list[str] = field(default_factory=list)
    lecture: object | None = None          # grader.submission.lecture.plan.LecturePlan for the lecture layout


def extract(nb, name: str, data: bytes) -> tuple[dict[str, str], NotebookSubmission]:
    """(files for the grading pipeline, what was found) for a parsed notebook."""
    cells = parse_cells(nb, valid(name))
    found: dict[str, tuple[list[Cell], str]] = {}
    for ex in EXERCISES.values():
        tagged = _tagged(cells, ex)
        if tagged:
            found[ex.id] = (tagged, "tag")
            continue
        defining = [c for c in cells if c.kind == "code" and _defines(c, ex.function)]
        if defining:
            found[ex.id] = (defining[-1:], "function")

    if not found:
        from grader.submission.lecture.headers import find_headers
        from grader.submission.lecture.plan import build_plan

        plan = build_plan(cells)
        if find_headers(cells) or plan.sections or plan.training_cells:  # headers, or the lecture's work itself
            info = NotebookSubmission(name=name, format="lecture", data=data, cells=cells,
                                      exercise_cells=plan.exercise_cells(), notes=list(plan.notes), lecture=plan)
            return {}, info
        ids = ", ".join(EXERCISES)
        raise NotebookError(
            f"no exercises found in {name}: no code cell is tagged with an exercise id ({ids}), none defines "
            "one of the exercise functions (backward_atomic, ...), no cell starts with '# Exercise 1', and no cell "
            "computes the lecture's gradients (dlogprobs ... dC, dlogits, dhprebn) or trains with its own backward pass")

    fmt = "tagged" if any(how == "tag" for _, how in found.values()) else "functions"
    info = NotebookSubmission(name=name, format=fmt, data=data, cells=cells)
    files = {}
    for ex_id, (chosen, how) in found.items():
        ex = EXERCISES[ex_id]
        broken = next((c for c in chosen if c.error), None)
        if broken is not None:
            text, origin, notes = _broken_file(ex, broken, name)
        else:
            text, origin, notes = build_file(ex, chosen, cells, name)
        files[ex.file] = text
        info.origins[ex.file] = origin
        info.exercise_cells[ex_id] = origin.cells
        where = ", ".join(str(c.number) for c in chosen)
        how_text = f"tagged {ex_id!r}" if how == "tag" else f"defines {ex.function}"
        info.notes.append(f"{ex_id}: cell {where} ({how_text})")
        info.notes += [f"{ex_id}: {note}" for note in notes]
    ipython = [c for c in cells if c.ipython and any(c.number in o.cells for o in info.origins.values())]
    for c in ipython:
        info.notes.append(f"cell {c.number}: IPython syntax on line {_ranges(c.ipython)} was ignored")
    return files, info

