"""Reading a student notebook: the exercise code it holds, as the contract's .py files.

A notebook is only read here, never run (running it is `grader.sandbox.inside.execute`).
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
are ignored. Cells are read as IPython read them (`sanitize`): IPython syntax
(`%magic`, `!shell`, `x?`) becomes `pass`.
"""

import ast
import builtins
import json
import re
import symtable
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grader.submission.bounded import (MAX_CELLS, MAX_STATEMENTS, InputError, SourceBudget, check_json_shape,
                            read_regular)
from grader.course.registry import EXERCISES
from grader.safe_text import clean_tree, valid

MAX_NOTEBOOK_BYTES = 64 << 20   # outputs (images) make notebooks large; they are dropped at once
MAX_CELL_CHARS = 1 << 20
BUILTINS = set(dir(builtins)) | {"__file__", "__name__", "__builtins__", "__doc__"}

CELL_MAGIC = re.compile(r"^%%(\w+)")
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun"}
MAGIC_LINE = re.compile(r"^\s*(?:[%!]|\?)(?!=)")
ASSIGN_MAGIC = re.compile(r"^\s*[\w.\[\], ]+?\s*=\s*[%!](?!=)")
HELP_LINE = re.compile(r"^\s*[\w.()\[\]]+\?\??\s*$")
# Lines IPython's transformer could rewrite: an escape first (! % ? , ; /), `x = !cmd` / `x = %magic`, `obj?`.
MAYBE_IPYTHON = re.compile(r"^\s*[!%?,;/]|=\s*[!%]|\?\s*$", re.MULTILINE)


class NotebookError(Exception):
    """The notebook cannot be read (shown as one line)."""


@dataclass
class Cell:
    number: int                   # 1-based position among all cells, as a student counts them
    kind: str                     # code | markdown | raw
    raw: str                      # the source as stored
    source: str = ""              # code cells: plain Python (IPython syntax turned into `pass`)
    tags: tuple[str, ...] = ()
    tree: ast.Module | None = None
    error: str | None = None      # why the cell does not parse
    ipython: list[int] = field(default_factory=list)  # lines that held IPython syntax

    @property
    def lines(self) -> list[str]:
        return self.source.splitlines()


def ipython8_leading_indent(lines: list[str]) -> list[str]:
    """IPython 8's rule (IPython 9 changed it to `textwrap.dedent`): the first line's indentation is
    removed from every line that starts with it, so a cell indented as a whole with comment lines at
    column 0 still runs, as it did in the students' Jupyter and Colab."""
    first = next((line for line in lines if line.strip()), "")
    indent = first[: len(first) - len(first.lstrip(" \t"))]
    if not indent:
        return lines
    return [line[len(indent):] if line.startswith(indent) else line for line in lines]


def _transformer():
    """IPython's own input transformer, with IPython 8's leading-indent rule; cell magics are ours.

    Leading empty lines are kept (a student counts lines from the top of the cell)."""
    from IPython.core.inputtransformer2 import TransformerManager, classic_prompt, ipython_prompt

    manager = TransformerManager()
    manager.cleanup_transforms = [lambda lines: ipython8_leading_indent(lines), classic_prompt, ipython_prompt]
    manager.line_transforms = []
    return manager


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _neutralise(lines: list[str], changed: list[int]) -> None:
    for i in changed:
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        lines[i] = f"{indent}pass  # IPython: {line.strip()}"


def sanitize(source: str) -> tuple[str, list[int]]:
    """Plain Python from a cell, as the student's IPython kernel read it; IPython syntax becomes `pass`.

    Uses IPython's TransformerManager (with IPython 8's indentation rule, see ipython8_leading_indent):
    a line it rewrites (`%magic`, `!shell`, `x = !ls`, `x?`) is turned into `pass`, so nothing of
    IPython runs. Returns the text (same number of lines) and the 1-based lines that were changed.
    """
    lines = source.splitlines()
    stripped = ipython8_leading_indent(lines)
    text = "\n".join(stripped)
    if not _parses(text) and _parses(textwrap.dedent(source)):  # IPython 9's rule, if that is what ran
        stripped = textwrap.dedent(source).splitlines()
    lines = list(stripped)
    changed = []
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and (match := CELL_MAGIC.match(lines[first])):
        if match.group(1) not in PYTHON_CELL_MAGICS:  # %%bash, %%writefile, ...: not Python at all
            return "\n".join("# " + line for line in lines), list(range(1, len(lines) + 1))
        lines[first] = f"pass  # IPython: {lines[first].strip()}"
        changed.append(first)
    magic = list(changed)
    if not MAYBE_IPYTHON.search("\n".join(lines)):
        return "\n".join(lines), sorted(i + 1 for i in changed)  # nothing IPython would rewrite: skip its tokenizer
    try:
        rewritten = _transformer().transform_cell("\n".join(lines)).splitlines()
    except Exception:  # noqa: BLE001 - IPython's tokenizer on broken code: fall back to the patterns
        rewritten = None
    if rewritten is not None and len(rewritten) == len(lines):
        for i, (before, after) in enumerate(zip(lines, rewritten)):
            if i not in changed and before.strip() != after.strip() and "get_ipython()" in after:
                changed.append(i)
    else:  # a magic continued over several lines: line by line, with the usual patterns
        for i, line in enumerate(lines):
            continued = bool(changed) and changed[-1] == i - 1 and lines[i - 1].rstrip().endswith("\\")
            if continued:
                lines[i] = "# IPython: " + line.strip()
                magic.append(i)
                changed.append(i)
            elif i not in changed and (MAGIC_LINE.match(line) or ASSIGN_MAGIC.match(line) or HELP_LINE.match(line)):
                changed.append(i)
    _neutralise(lines, [i for i in changed if i not in magic])
    return "\n".join(lines), sorted(i + 1 for i in changed)


def _source(cell) -> str:
    src = cell.get("source", "")
    return valid("".join(str(part) for part in src) if isinstance(src, list) else src)


def parse_cells(nb, name: str = "the notebook") -> list[Cell]:
    """The cells, code parsed; NotebookError past the budget (cells, lines, tokens, statements).

    The budget is checked before each cell is parsed, so a notebook of a million tiny statements
    costs milliseconds here and never reaches the analysis of its statements.
    """
    raw_cells = nb.get("cells", [])
    if len(raw_cells) > MAX_CELLS:
        raise NotebookError(f"{name} has {len(raw_cells)} cells; the grader reads at most {MAX_CELLS}")
    budget = SourceBudget(name)
    statements_seen = 0
    cells = []
    for number, raw_cell in enumerate(raw_cells, start=1):
        if not isinstance(raw_cell, dict):
            cells.append(Cell(number=number, kind="raw", raw=""))
            continue
        kind = raw_cell.get("cell_type", "code")
        raw = _source(raw_cell)
        meta = raw_cell.get("metadata")
        tags = meta.get("tags", []) if isinstance(meta, dict) else []
        cell = Cell(number=number, kind=kind, raw=raw,
                    tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ())
        if kind == "code":
            if len(raw) > MAX_CELL_CHARS:
                cell.error = f"cell {number} is longer than {MAX_CELL_CHARS} characters and was not read"
            else:
                try:
                    budget.charge(raw)
                except InputError as err:
                    raise NotebookError(str(err)) from None
                cell.source, cell.ipython = sanitize(raw)
                try:
                    cell.tree = ast.parse(cell.source)
                except SyntaxError as err:
                    cell.error = f"{type(err).__name__} on line {err.lineno}: {err.msg}"
                except (ValueError, RecursionError, MemoryError) as err:
                    cell.error = f"cannot be parsed ({type(err).__name__})"
                statements_seen += len(cell.tree.body) if cell.tree is not None else 0
                if statements_seen > MAX_STATEMENTS:
                    raise NotebookError(f"{name} has more than {MAX_STATEMENTS} top-level statements in its code "
                                        "cells; the grader reads at most that many: remove code the exercises "
                                        "do not need")
        cells.append(cell)
    return cells


def read_notebook(path: Path) -> tuple[object, bytes]:
    """(the notebook as nbformat v4 with outputs dropped, its bytes); NotebookError if it is not one."""
    path = Path(path)
    try:
        data = read_regular(path, MAX_NOTEBOOK_BYTES, valid(path.name))  # size from fstat, before reading
    except InputError as err:
        raise NotebookError(str(err)) from None
    return parse_notebook_bytes(data, path.name), data


def parse_notebook_bytes(data: bytes, name: str):
    """The notebook in `data`, read within bounds: size, JSON nesting and containers checked before parsing."""
    name = valid(name)
    try:
        if len(data) > MAX_NOTEBOOK_BYTES:
            raise InputError(f"{name} is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
        check_json_shape(data, name)
        raw = json.loads(data.decode("utf-8", errors="replace"))
    except InputError as err:
        raise NotebookError(str(err)) from None
    except (ValueError, RecursionError) as err:
        raise NotebookError(f"{name} is not a notebook: not valid JSON ({type(err).__name__}: {err})"[:300]) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        raise NotebookError(f"{name} is not a Jupyter notebook (no list of cells)")
    for cell in raw.get("cells") or []:
        if isinstance(cell, dict):  # outputs are never read, and often most of the file
            if cell.get("cell_type") == "code":
                cell["outputs"], cell["execution_count"] = [], None
            else:
                cell.pop("outputs", None)
    raw = clean_tree(raw)  # JSON may spell lone surrogates ("\\ud800"): valid Unicode from here on
    if isinstance(raw.get("cells"), list):
        return nbformat.from_dict(raw)  # read leniently: a notebook that is not quite valid still has cells
    try:  # an old (v3) notebook: converted
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(raw), as_version=4, capture_validation_error={})
    except Exception as err:  # noqa: BLE001 - nbformat raises many kinds for malformed files
        raise NotebookError(f"{name} is not a readable notebook ({type(err).__name__}: {err})") from None
    if not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{name} is not a Jupyter notebook (no list of cells)")
    return nb


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


def statements(cell: Cell) -> list[Stmt]:
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
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
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
    return any(s.kind == "def" and function in s.binds for s in statements(cell))


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


# ---------------------------------------------------------------------------
# After grading: point messages at cells, record what was read

TRACE_FILE = re.compile(r'File "(?:[^"]*/)?(\w+\.py)", line (\d+)')


def _map_traceback(text: str | None, info: NotebookSubmission) -> str | None:
    if not text:
        return text

    def repl(match):
        origin = info.origins.get(match.group(1))
        where = origin.locate(int(match.group(2))) if origin else None
        return f"cell {where[0]}, line {where[1]}" if where else match.group(0)

    return TRACE_FILE.sub(repl, text)


def annotate_report(report, info: NotebookSubmission) -> None:
    """Messages in terms of the notebook's cells; the `notebook` section of the report."""
    from grader.report import NotebookInfo

    for ex in report.exercises:
        origin = info.origins.get(ex.file)
        if origin is not None:
            ex.traceback = _map_traceback(ex.traceback, info)
            cells = ", ".join(str(c) for c in origin.cells)
            ex.file = f"cell {cells}" if len(origin.cells) == 1 else f"cells {cells}"
        elif ex.status == "not_submitted":
            exercise = EXERCISES[ex.id]
            msg = (f"not in the notebook: no code cell is tagged {ex.id!r} and none defines {exercise.function}")
            ex.message = msg
            ex.file = "not found"
            for check in ex.checks:
                check.message = msg
    for finding in report.integrity:  # the scan read the generated files: point at the cells instead
        origin = info.origins.get(finding.file)
        where = origin.locate(finding.line) if origin and finding.line else None
        if where:
            old = f"{finding.file} line {finding.line}"
            finding.file, finding.line = f"cell {where[0]}", where[1]
            finding.message = finding.message.replace(old, f"cell {where[0]}, line {where[1]}")
    report.submission.files = [info.name]
    report.notebook = NotebookInfo(format=info.format, exercise_cells=info.exercise_cells, notes=info.notes)


def finish_report(report, info: NotebookSubmission, *, config, level: str, execute: bool | None = None,
                  findings=()) -> None:
    """The notebook's part of the report; with `execute` (or grading.yaml's notebook.execute), run it too."""
    if info.format == "lecture":
        from grader.report import NotebookInfo

        report.submission.files = [info.name]
        report.notebook = NotebookInfo(format="lecture", exercise_cells=info.exercise_cells,
                                       notes=list(info.lecture.notes))
        report.notes.append("The lecture's notebook: exercises 1 to 3 were graded by running their cells with the "
                            "grader's forward pass (the lecture's shapes) in scope, exercise 4 by running its "
                            "training loop for a few capped steps on the grader's data; data loading, plotting "
                            "and the rest of training were not run.")
    else:
        annotate_report(report, info)
    report.integrity += list(findings)
    if config.notebook.execute if execute is None else execute:
        from grader.sandbox.inside.execute import execute_notebook

        result = execute_notebook(info.data, config, level, config.notebook.cell_timeout)
        report.notebook.execution = result
        report.duration_s = round(report.duration_s + result.seconds, 3)
        report.notes.append(f"The notebook was also run top to bottom (this never changes the score): {result.message}")
