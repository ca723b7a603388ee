"""The student release, generated from the reference solutions.

`grader release` rewrites `assignments/*.py` from `solutions/*.py` (every
`# BEGIN SOLUTION` ... `# END SOLUTION` region becomes one
`dX = None  # TODO` line per answer variable, in order of first assignment)
and writes two notebooks with nbformat: the student notebook
`assignments/backprop_ninja.ipynb` and the solved one
`solutions/backprop_ninja.ipynb`. Everything is deterministic (no outputs,
fixed cell ids), so `grader release --check` can compare byte for byte.

A course whose exercises come from its grading.yaml (`grader release --config`) gets the stubs
of its exercises; the notebook is the lecture's (its helper cell holds the lecture's model), so it
is written for a course that holds the lecture's exercises. Each exercise brings its own lesson
and check cell (data files named by its definition); the rest of the notebook is
`grader/release/templates/`, and the model in its helper cell is generated from
`grader/course/mlp.py`, the very code that grades it.
"""

import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import v4

from grader.course import mlp
from grader.course.registry import BUILT_IN

NOTEBOOK = "backprop_ninja.ipynb"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
ANSWER = re.compile(r"^(\s*)((?:d\w*\s*,\s*)*d\w*)\s*=(?!=)")


class ReleaseError(Exception):
    """The solutions cannot be turned into a release (shown as one line)."""


def _regions(text: str, name: str):
    """Yield ("code", line) and ("region", indent, lines) items of a solution file."""
    region, indent, start = None, "", 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if region is not None:
                raise ReleaseError(f"{name}:{number}: {BEGIN} inside another solution region (opened on line {start})")
            region, indent, start = [], line[: len(line) - len(line.lstrip())], number
        elif marker == END:
            if region is None:
                raise ReleaseError(f"{name}:{number}: {END} without a matching {BEGIN}")
            yield ("region", indent, region)
            region = None
        elif region is not None:
            region.append(line)
        else:
            yield ("code", line)
    if region is not None:
        raise ReleaseError(f"{name}:{start}: {BEGIN} is never closed")


def answer_names(lines: list[str], indent: str) -> list[str]:
    """The `d...` variables a region assigns at its own indentation, in order of first assignment."""
    names: list[str] = []
    for line in lines:
        match = ANSWER.match(line)
        if match and match.group(1) == indent:
            for name in (part.strip() for part in match.group(2).split(",")):
                if name not in names:
                    names.append(name)
    return names


def strip_solutions(text: str, name: str = "<solution>") -> str:
    """The student stub: each solution region becomes `dX = None  # TODO` lines."""
    out = []
    for item in _regions(text, name):
        if item[0] == "code":
            out.append(item[1])
        else:
            _, indent, lines = item
            names = answer_names(lines, indent)
            if not names:
                raise ReleaseError(f"{name}: a solution region assigns no d... variable, "
                                   "so the stub would have nothing to fill in")
            out += [f"{indent}{var} = None  # TODO\n" for var in names]
    return "".join(out)


def unmark_solutions(text: str, name: str = "<solution>") -> str:
    """The solution without its marker lines (for the solved notebook)."""
    out = []
    for item in _regions(text, name):
        out += [item[1]] if item[0] == "code" else item[2]
    return "".join(out)


def split_imports(text: str) -> tuple[list[str], str]:
    """(the import lines at the top of a file, the rest without leading blank lines)."""
    lines = text.splitlines()
    imports, i = [], 0
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith(("import ", "from "))):
        if lines[i].strip():
            imports.append(lines[i])
        i += 1
    return imports, "\n".join(lines[i:]).strip("\n")


# ---------------------------------------------------------------------------
# The notebook: a short lesson per exercise, the function in a tagged cell,
# and a check cell that compares with autograd on a seeded batch.

TEMPLATES = Path(__file__).parent / "templates"


def template(name: str) -> str:
    return (TEMPLATES / name).read_text().rstrip("\n")


def _data(ex, name: str, what: str) -> str:
    """One of an exercise's data files, relative to its definition's folder."""
    path = ex.data_file(name)
    try:
        return path.read_text().rstrip("\n")
    except OSError as err:
        raise ReleaseError(f"exercise {ex.id!r}: cannot read its {what} {path}: {err.strerror}") from None


def _returns(ex) -> str:
    if ex.returns_dict:
        return "a dict of gradients keyed by " + ", ".join(f"`{c}`" for c in ex.gradient_checks)
    return f"`d{ex.gradient_checks[0]}`"


def lesson(ex) -> str:
    """The exercise's lesson (markdown); a generic one when its definition names none."""
    if ex.lesson:
        return _data(ex, ex.lesson, "lesson")
    args = ", ".join((*ex.tensor_args, *ex.int_args))
    return (f"## {ex.title}\n\nWrite `{ex.function}({args})` in the next cell; it returns {_returns(ex)}. "
            "Replace every `None  # TODO`, then run the check cell below it.")


def cmp_lines(ex) -> str | None:
    """The exercise's plain check, as in the lecture (one `cmp` line per gradient and case); None if it has none."""
    return _data(ex, ex.check_cell, "check cell") if ex.check_cell else None


def check_code(ex) -> str:
    """The check cell: the grader's inline view when it is installed, else the plain check."""
    plain = cmp_lines(ex) or (f'print("{ex.function}: this notebook has no check of its own for it; '
                              f'`grader grade` checks it on the grader\'s cases")')
    return f'if not show_graded("{ex.id}", {ex.function}):\n' + textwrap.indent(plain, "    ")


def _constant(name: str, value) -> str:
    """`NAME = (...)`, wrapped like the rest of the cell."""
    if not isinstance(value, tuple):
        return f"{name} = {value!r}"
    items = ", ".join(f'"{v}"' if isinstance(v, str) else repr(v) for v in value) + ","
    body = textwrap.fill(items, width=96, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False)
    return f"{name} = (\n{body}\n)"


def model_source() -> str:
    """The lecture's model for the helper cell, generated from grader/course/mlp.py (one copy of it)."""
    facts = [_constant(name, getattr(mlp, name)) for name in ("PARAMS", "ATOMIC", "FORWARD_ARGS", "BN_EPS")]
    functions = [inspect.getsource(f).rstrip("\n") for f in (mlp.init_params, mlp.forward)]
    shape = ", ".join(f"{k}={v}" for k, v in mlp.LECTURE_SHAPE.items())
    case = template("lecture_case.py").replace("LECTURE_SHAPE_ARGS=None", shape)
    return "\n\n\n".join(["# The lecture's model: the grader's own code (grader/course/mlp.py).\n" + "\n".join(facts),
                           *functions, case])


def helpers() -> str:
    return model_source() + "\n\n\n" + template("helpers.py")


def intro(exercises) -> str:
    rows = "\n".join(f"| `{ex.id}` | `{ex.function}` | {ex.title} |" for ex in exercises)
    return template("intro.md").replace("{exercises}", rows)


@dataclass
class SourceFile:
    name: str           # e.g. atomic.py
    solution: str       # solutions/<name>
    stub: str           # what release writes to assignments/<name>


def _cell(kind: str, cell_id: str, source: str, tags: tuple[str, ...] = ()):
    cell = v4.new_code_cell(source) if kind == "code" else v4.new_markdown_cell(source)
    cell.id = cell_id
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def build_notebook(files: dict[str, SourceFile], solved: bool, exercises=BUILT_IN) -> nbformat.NotebookNode:
    """The student (solved=False) or solved notebook, from the exercise files."""
    imports: list[str] = []
    bodies = {}
    setup_code = template("setup.py")
    for ex in exercises:
        src = files[ex.file]
        text = unmark_solutions(src.solution, ex.file) if solved else src.stub
        head, body = split_imports(text)
        imports += [line for line in head if line not in imports]
        bodies[ex.id] = body
    setup = setup_code
    extra = [line for line in imports if line not in setup_code.splitlines()]
    if extra:
        setup = "\n".join(extra) + "\n" + setup

    cells = [_cell("markdown", "intro", intro(exercises)),
             _cell("code", "setup", setup),
             _cell("markdown", "forward-md", template("forward.md")),
             _cell("code", "helpers", helpers())]
    for ex in exercises:
        cells += [_cell("markdown", f"{ex.id}-md", lesson(ex)),
                  _cell("code", ex.id, bodies[ex.id], tags=(ex.id,)),
                  _cell("code", f"{ex.id}-check", check_code(ex))]
    cells += [_cell("markdown", "names-md", template("train.md")), _cell("code", "names-train", template("train.py"))]

    nb = v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def release_outputs(solutions: Path, assignments: Path, exercises=BUILT_IN) -> dict[Path, str]:
    """Every file `grader release` writes for a course of these exercises, path -> text."""
    files = {}
    for ex in exercises:
        path = solutions / ex.file
        try:
            solution = path.read_text()
        except OSError as err:
            raise ReleaseError(f"cannot read {path}: {err.strerror}") from None
        files[ex.file] = SourceFile(ex.file, solution, strip_solutions(solution, str(path)))
    outputs = {assignments / name: src.stub for name, src in files.items()}
    if any(ex in BUILT_IN for ex in exercises):  # the notebook is the lecture's: its helper cell is the lecture's model
        outputs[assignments / NOTEBOOK] = notebook_text(build_notebook(files, solved=False, exercises=exercises))
        outputs[solutions / NOTEBOOK] = notebook_text(build_notebook(files, solved=True, exercises=exercises))
    return outputs


def write_release(solutions: Path, assignments: Path, exercises=BUILT_IN) -> list[Path]:
    """Write the release; returns the files whose content changed."""
    changed = []
    for path, text in release_outputs(solutions, assignments, exercises).items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    return changed


def check_release(solutions: Path, assignments: Path, exercises=BUILT_IN) -> list[str]:
    """What differs between the committed release and what `grader release` would write."""
    problems = []
    for path, text in release_outputs(solutions, assignments, exercises).items():
        if not path.exists():
            problems.append(f"{path} is missing")
        elif path.read_bytes() != text.encode():
            problems.append(f"{path} differs from what `grader release` writes")
    return problems
