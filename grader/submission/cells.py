"""Reading a notebook file and its cells, within bounds, as the student's IPython read them.

Nothing here runs: the file's size, JSON nesting and cell count are checked before parsing, stored
outputs are dropped at once, and each code cell is turned into plain Python (`sanitize`: IPython's
own input transformer; `%magic`, `!shell` and `x?` become `pass`) and parsed with `ast`.
grader.submission.notebook finds the exercises in these cells.
"""

import ast
import json
import re
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from grader.safe_text import clean_tree, valid
from grader.submission.bounded import (MAX_CELLS, MAX_STATEMENTS, InputError, SourceBudget, check_json_shape,
                                       read_regular)

MAX_NOTEBOOK_BYTES = 64 << 20   # outputs (images) make notebooks large; they are dropped at once
MAX_CELL_CHARS = 1 << 20

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
    statements: list | None = field(default=None, repr=False, compare=False)  # grader.submission.notebook's
    #                                                              analysis of the cell, made once

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
        # A v4 notebook as plain JSON, read leniently (one that is not quite valid still has cells): only
        # dict access follows, so nbformat (90 ms of imports, on a notebook grade's critical path) is not needed.
        return raw
    import nbformat

    try:  # an old (v3) notebook: converted by nbformat
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(raw), as_version=4, capture_validation_error={})
    except Exception as err:  # noqa: BLE001 - nbformat raises many kinds for malformed files
        raise NotebookError(f"{name} is not a readable notebook ({type(err).__name__}: {err})") from None
    if not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{name} is not a Jupyter notebook (no list of cells)")
    return nb

