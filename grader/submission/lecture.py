"""The lecture's own notebook, as students complete it.

Students who follow the lecture fill in its starter notebook: exercise 1 (the
26 gradients, `dlogprobs` ... `dC`), exercise 2 (`dlogits` in one go) and
exercise 3 (`dhprebn` in one go from `dhpreact`). This module finds each
exercise's cells and plans how to run them; the worker
(`grader.sandbox.inside.execute.run_lecture_exercise`) runs each exercise in its own fresh
namespace holding the grader's forward pass (the lecture's names and shapes)
and sends the `d...` variables back, which are graded like the answers of
`atomic`, `cross_entropy` and `batchnorm`.

Where the work is: what a cell computes decides (`grader.submission.lecture_find`:
gradients of exercise 1, a one-go dlogits or dhprebn, a training loop);
`# Exercise N` headers, misspelled or not, place the cells around them. A
cell before any header goes where its code says, so does a one-go cell under
another exercise's header when its own exercise has no header; exercise 4's
training loop is never part of exercises 1 to 3 (`LecturePlan.training_cells`).

What is run: in an exercise's cells, every top-level statement, one at a time,
except the ones that plot, load data, train, `cmp`, or are the lecture's own
autograd plumbing (`loss.backward()`, `retain_grad()`); a statement that
raises costs only what it did not define. From the other cells before it,
imports, function definitions and literal constants. The statements that run
get the same static check as .py files (`scan_plan`). Nothing else: no data
loading, no plotting, no training.

Imports only the standard library: the worker uses it too.
"""

import ast
import builtins
import difflib
import re
from dataclasses import dataclass, field

from grader.course.mlp import ATOMIC

from grader.submission.lecture_find import cell_role, revisits_exercise_1

GRADED = {1: "atomic", 2: "cross_entropy", 3: "batchnorm"}
NUMBER = {ex_id: number for number, ex_id in GRADED.items()}
NOT_IN_FORMAT = {
    "embedding": "not in this format: the lecture's notebook has no separate embedding exercise "
                 "(dC is graded as part of exercise 1)",
}
EXPECTED = {"atomic": ATOMIC, "cross_entropy": ("logits",), "batchnorm": ("hprebn",)}
PROVIDED = {"batchnorm": ("dhpreact",)}  # true gradients put in an exercise's namespace

# The lecture's shapes; only cases of this shape apply (the cells hard-code sizes).
LECTURE_SHAPE = {"n": 32, "block": 3, "n_embd": 10, "n_hidden": 64, "vocab": 27}

# "Exercise N", also misspelled (Excercise, Excercie, exercice): a word starting "ex" close to "exercise".
_WORD = r"(ex[a-z]{3,9})\s*#?\s*(\d+)"
HEADER = re.compile(r"^\s*#+\s*\**\s*" + _WORD, re.IGNORECASE)
MID_HEADER = re.compile(r"^#+\s*" + _WORD + r"\s*(?::|$)", re.IGNORECASE)
BOLD_HEADER = re.compile(r"^\s*(?:[*\-+]\s*)?\**\s*" + _WORD, re.IGNORECASE)  # **Exercise 1**, * Exercise 1:
DOC_HEADER = re.compile(r"^\s*" + _WORD, re.IGNORECASE)


def _header_number(match) -> int | None:
    """The exercise number of a header match, if its word is "exercise" or a misspelling of it."""
    if match is None:
        return None
    word = match.group(1).lower()
    if word != "exercise" and difflib.SequenceMatcher(None, word, "exercise").ratio() < 0.75:
        return None
    return int(match.group(2))


PLOT_NAMES = {"plt", "matplotlib", "sns", "seaborn", "plotly", "px"}
DATA_NAMES = {"open", "words", "Xtr", "Ytr", "Xdev", "Ydev", "Xte", "Yte", "Xval", "Yval",
              "build_dataset", "urllib", "requests", "wget", "subprocess"}
TRAIN_NAMES = {"max_steps", "lossi", "stepi", "optimizer", "split_loss"}
# The lecture's own autograd plumbing (its forward cells call loss.backward() to check against): not run.
# Anything else that reaches autograd runs through grader.submission.integrity.scan like every submission kind.
AUTOGRAD_ATTRS = {"grad", "backward", "retain_grad", "retains_grad", "requires_grad", "requires_grad_", "zero_grad"}
# An exercise cell that also initialises the network (or draws a batch) would grade the student's own
# random parameters against the grader's answers: the grader's parameters and batch stand.
REINIT = {"C", "W1", "b1", "W2", "b2", "bngain", "bnbias", "Xb", "Yb"}
SKIP_IMPORTS = ("matplotlib", "seaborn", "plotly", "IPython", "google", "google.colab", "tqdm", "wandb")


@dataclass
class Skipped:
    cell: int
    line: int
    reason: str
    names: list[str]


@dataclass
class AutogradUse:
    """A `.grad` read whose value reaches some of the exercise's answers."""

    cell: int
    line: int
    text: str                                       # e.g. `hpreact.grad`
    names: list[str] = field(default_factory=list)  # answers (d...) it reaches
    direct: list[str] = field(default_factory=list)  # answers assigned from it directly


@dataclass
class Section:
    """One graded exercise's cells and what the grader does with them."""

    number: int
    ex_id: str
    cells: list[dict] = field(default_factory=list)   # {"cell", "source", "run": [[line, col], ...]}
    skipped: list[Skipped] = field(default_factory=list)
    autograd: list[AutogradUse] = field(default_factory=list)
    statements: list[tuple[int, ast.stmt, str]] = field(default_factory=list)  # (cell, node, source), in order
    broken: list[tuple[int, str]] = field(default_factory=list)   # (cell, message): cells that do not parse
    aliases: dict[str, list[str]] = field(default_factory=dict)   # gradient -> the student's variables (cmp lines)
    forward_aliases: dict[str, str] = field(default_factory=dict)  # student's forward name -> lecture's
    elsewhere: set[str] = field(default_factory=set)   # names other sections' statements assign
    forward_cell: dict | None = None   # the student's forward cell, run to read their names (see _forward_cell)

    @property
    def cell_numbers(self) -> list[int]:
        return sorted({c["cell"] for c in self.cells} | {cell for cell, _ in self.broken})


@dataclass
class LecturePlan:
    sections: dict[str, Section]
    prelude: list[dict]
    headers: list[tuple[int, int]]      # (cell, exercise number) in notebook order
    notes: list[str] = field(default_factory=list)
    # Exercise 4: the cells whose loop trains the network with updates (never part of exercises 1-3).
    training_cells: list[int] = field(default_factory=list)
    prelude_nodes: list[tuple[int, ast.stmt, str]] = field(default_factory=list)  # (cell, statement, source)
    train: object | None = None         # exercise 4's loop: grader.submission.lecture_train.TrainPlan

    def exercise_cells(self) -> dict[str, list[int]]:
        cells = {ex_id: s.cell_numbers for ex_id, s in self.sections.items()}
        if self.train is not None:  # exercise 4: grader.submission.lecture_train
            cells["train"] = self.train.cells
        return cells


# ---------------------------------------------------------------------------
# Finding the sections

def _leading_header(cell) -> int | None:
    """The exercise number a cell starts with: a `# Exercise N` comment or heading, or a docstring."""
    if cell.kind == "markdown":
        first = next((line for line in cell.raw.splitlines() if line.strip()), "")
        return _header_number(HEADER.match(first)) or _header_number(BOLD_HEADER.match(first))
    if cell.kind != "code":
        return None
    for line in (cell.source or cell.raw).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("pass  # IPython:"):
            continue
        if not stripped.startswith("#"):
            break
        number = _header_number(HEADER.match(line))
        if number is not None:
            return number
    body = cell.tree.body if cell.tree is not None else []
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        first = next((line for line in body[0].value.value.splitlines() if line.strip()), "")
        return _header_number(DOC_HEADER.match(first))
    return None


def _mid_headers(cell) -> list[tuple[int, int]]:
    """(line, number) of `# Exercise N:` comment lines at column 0 after the cell's first code line."""
    if cell.kind != "code" or cell.tree is None:
        return []
    real = [node.lineno for node in cell.tree.body if node.lineno not in cell.ipython]  # not `%magic` stand-ins
    if not real:
        return []
    first_code = real[0]
    out = []
    for i, line in enumerate(cell.source.splitlines(), start=1):
        if i > first_code:
            number = _header_number(MID_HEADER.match(line))
            if number is not None:
                out.append((i, number))
    return out


def _code_header_numbers(cells) -> set[int]:
    numbers = set()
    for cell in cells:
        if cell.kind == "code":
            lead = _leading_header(cell)
            numbers |= ({lead} if lead is not None else set()) | {n for _, n in _mid_headers(cell)}
    return numbers


def _cell_header(cell, code_numbers: set[int]) -> int | None:
    """A cell's leading header; a markdown heading counts only for exercises with no `# Exercise N` code cell."""
    number = _leading_header(cell)
    if cell.kind == "markdown" and number in code_numbers:
        return None  # e.g. notes about exercise 3 written inside exercise 2's section
    return number


def find_headers(cells) -> list[tuple[int, int]]:
    """(cell, exercise number) for every exercise header, in notebook order."""
    code_numbers = _code_header_numbers(cells)
    found = []
    for cell in cells:
        number = _cell_header(cell, code_numbers)
        if number is not None:
            found.append((cell.number, number))
        found += [(cell.number, n) for _, n in _mid_headers(cell)]
    return found


# ---------------------------------------------------------------------------
# Which statements run

NO_GRAD = {"no_grad", "inference_mode"}


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


def _names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _attrs(node) -> set[str]:
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def assigned_names(node) -> set[str]:
    """Variables a statement binds or changes in place (`dC[ix] += ...`, `dC.index_add_(...)`)."""
    cached = getattr(node, "_grader_assigned", None)  # planning asks this many times of each statement
    if cached is not None:
        return set(cached)
    names = _assigned_names(node)
    node._grader_assigned = frozenset(names)
    return names


def _assigned_names(node) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(sub.id)
        elif isinstance(sub, (ast.Subscript, ast.Attribute)) and isinstance(sub.ctx, ast.Store):
            base = sub.value
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
        elif (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
              and sub.func.attr.endswith("_") and isinstance(sub.func.value, ast.Name)):
            names.add(sub.func.value.id)  # in-place tensor methods: index_add_, zero_, ...
    return names


def _top_level_targets(node) -> set[str]:
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    names = set()
    for t in targets:
        names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def _is_cmp_call(node) -> bool:
    if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Call):
        return False
    call = node.value
    if isinstance(call.func, ast.Name) and call.func.id == "print" and len(call.args) == 1:
        call = call.args[0] if isinstance(call.args[0], ast.Call) else call
    return isinstance(call.func, ast.Name) and call.func.id == "cmp"


def _big_range(node) -> bool:
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "range"
                and any(isinstance(a, ast.Constant) and isinstance(a.value, int) and a.value >= 1000
                        for a in sub.args)):
            return True
    return False


def _has_loop(node) -> bool:
    return any(isinstance(sub, (ast.For, ast.While, ast.AsyncFor)) for sub in ast.walk(node))


def reads_grad(node) -> bool:
    return any(isinstance(sub, ast.Attribute) and sub.attr == "grad" and isinstance(sub.ctx, ast.Load)
               for sub in ast.walk(node))


def uses_autograd(node) -> bool:
    """`.backward()`, `.retain_grad()`, `requires_grad`, `p.grad = None`: the lecture's plumbing."""
    return bool(_attrs(node) & AUTOGRAD_ATTRS)


def _is_check_call(node, checkers) -> bool:
    """A call of the student's own cmp-like helper (a function that reads .grad), alone on its line."""
    call = node.value if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) else None
    if call is not None and isinstance(call.func, ast.Name) and call.func.id == "print" and call.args:
        call = call.args[0] if isinstance(call.args[0], ast.Call) else None
    return call is not None and isinstance(call.func, ast.Name) and call.func.id in checkers


def skip_reason(node, checkers=()) -> str | None:
    """Why a statement of an exercise section is not run, or None to run it.

    `checkers`: names of the student's own cmp-like helpers (they compare with .grad)."""
    if reads_grad(node):
        return "reads autograd's gradient (.grad)"
    if uses_autograd(node):
        return "autograd (.backward, .retain_grad, requires_grad)"
    if any(name.startswith("d") for name in _top_level_targets(node)):
        return None  # computes a gradient: always run
    if _is_cmp_call(node) or _is_check_call(node, checkers):
        return "a cmp check (the grader compares itself)"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if any(m == s or m.startswith(s + ".") for m in modules for s in SKIP_IMPORTS):
            return "plotting or notebook tooling"
        return None
    names, attrs = _names(node), _attrs(node)
    strings = [s.value for s in ast.walk(node) if isinstance(s, ast.Constant) and isinstance(s.value, str)]
    if names & PLOT_NAMES or attrs & {"imshow", "plot", "hist", "figure"}:
        return "plotting"
    if names & DATA_NAMES or any("names.txt" in s or "://" in s for s in strings):
        return "data loading"
    if _top_level_targets(node) & REINIT:
        return "re-initialises the parameters or the batch (the grader's are used)"
    if _has_loop(node) and (names & TRAIN_NAMES or attrs & {"backward", "step", "zero_grad"} or _big_range(node)
                            or any(isinstance(s, ast.While) and isinstance(s.test, ast.Constant) and s.test.value
                                   for s in ast.walk(node))):
        return "a training or sampling loop"
    return None


def _grad_reads(node, source: str) -> list[tuple[int, str]]:
    return [(sub.lineno, ast.get_source_segment(source, sub) or ".grad") for sub in ast.walk(node)
            if isinstance(sub, ast.Attribute) and sub.attr == "grad" and isinstance(sub.ctx, ast.Load)]


def autograd_uses(sec: "Section") -> list[AutogradUse]:
    """The `.grad` reads whose values flow into the exercise's answers, in statement order.

    `dhpreact = hpreact.grad` in exercise 1 makes dhpreact (and what is computed from it) autograd's;
    in exercise 3, where the grader supplies the true dhpreact, the same line is harmless. A `.grad`
    that is only printed or compared reaches no answer and is not a use.
    """
    expected = {"d" + name for name in EXPECTED[sec.ex_id]}
    provided = set(PROVIDED.get(sec.ex_id, ()))
    tainted: dict[str, tuple[AutogradUse, bool]] = {}   # name -> (its source, assigned directly)
    for cell, node, source in sec.statements:
        names = assigned_names(node) - provided
        reads = _grad_reads(node, source)
        if reads:
            use = AutogradUse(cell, reads[0][0], reads[0][1])
            for name in names:
                tainted[name] = (use, True)
            continue
        loaded = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        source_use = next((tainted[n][0] for n in sorted(loaded) if n in tainted), None)
        for name in names:
            if source_use is not None:
                tainted.setdefault(name, (source_use, False))
            elif name in tainted and not isinstance(node, ast.AugAssign):
                del tainted[name]  # computed again, by hand
    uses: list[AutogradUse] = []
    for name in sorted(tainted):
        use, direct = tainted[name]
        if name in expected:
            if use not in uses:
                uses.append(use)
            use.names.append(name)
            if direct:
                use.direct.append(name)
    return sorted(uses, key=lambda u: (u.cell, u.line))


def _is_prelude(node) -> bool:
    """What earlier cells give every exercise: imports, functions, classes and literal constants."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return skip_reason(node) is None
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return (all(isinstance(t, ast.Name) for t in targets)
                and all(isinstance(n, (ast.Constant, ast.Tuple, ast.List, ast.UnaryOp, ast.BinOp, ast.unaryop,
                                       ast.operator, ast.Load)) for n in ast.walk(node.value)))
    # Not cmp, nor the student's own cmp-like helpers (they compare with .grad, which no grader tensor has),
    # nor helpers that plot, load data or train.
    return (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name != "cmp" and not reads_grad(node)
            and skip_reason(node) is None)


def section_prelude(plan: "LecturePlan", sec: "Section") -> list[dict]:
    """The prelude statements an exercise needs: those defining names its statements read (and what
    those read in turn), from the cells before its last one. An unused `import os` stays out."""
    last = max(sec.cell_numbers, default=0)
    wanted: set[str] = set()
    for _, node, _ in sec.statements:
        wanted |= _loads_of(node)
    candidates = [(cell, node, source) for cell, node, source in plan.prelude_nodes if cell < last]
    chosen: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, (_, node, _) in enumerate(candidates):
            if i not in chosen and _bound(node) & wanted:
                chosen.add(i)
                wanted |= _loads_of(node)
                changed = True
    entries: dict[int, dict] = {}
    for i in sorted(chosen):
        cell, node, source = candidates[i]
        entry = entries.setdefault(cell, {"cell": cell, "source": source, "run": []})
        entry["run"].append([node.lineno, node.col_offset])
    return [entries[cell] for cell in sorted(entries)]


EXCLUDED = 0  # a cell in no section and not in the prelude: exercise 4's training loop


def _placement(cells, code_numbers: set[int]) -> tuple[dict[int, int | None], dict[int, int | None]]:
    """Per code cell without a mid-cell header: (the section it is graded in, what its code computes).

    Headers are hints: a cell before any header goes where its code says;
    a one-go dlogits or dhprebn cell under another exercise's header moves to its own exercise when
    that exercise has no header; a cell under exercise 2's or 3's header that assigns only exercise 1's
    gradients (a fix made later) goes back to exercise 1; a training loop is never part of exercises 1 to 3.
    """
    by_header: dict[int, int | None] = {}
    roles: dict[int, int | None] = {}
    revisits: dict[int, list[str]] = {}
    current = None
    for cell in cells:
        lead = _cell_header(cell, code_numbers)
        if lead is not None:
            current = lead
        if cell.kind != "code":
            continue
        mids = _mid_headers(cell)
        if mids:
            current = mids[-1][1]
            continue
        by_header[cell.number] = current
        roles[cell.number] = cell_role(cell)
        revisits[cell.number] = revisits_exercise_1(cell, current) if roles[cell.number] == 1 else []
    with_header = {n for _, n in find_headers(cells)}
    placed: dict[int, int | None] = {}
    for number, header in by_header.items():
        role = roles[number]
        if role == 4:
            placed[number] = EXCLUDED
        elif header in GRADED:
            moved = role in (2, 3) and role != header and role not in with_header
            if role == 1 and revisits[number]:  # back to exercise 1 after exercise 2 or 3
                moved, role = True, 1
            placed[number] = role if moved else header
        elif header is None:  # before any header: where its code says
            placed[number] = role if role in GRADED else None
        else:  # under exercise 4's header (or a later one): its code, if any, is exercise 4's
            placed[number] = EXCLUDED
    return placed, roles


def _given_reads(cell, number: int, provided, notes: list[str]):
    """(source, tree) of a cell of an exercise that is given some gradients (exercise 3: dhpreact), with
    `hpreact.grad` read as that given `dhpreact`: the student took the exercise's input from autograd,
    the grader hands it the true one. Same length, so every statement keeps its line and column."""
    source = cell.source
    for name in provided:
        tensor = name[1:]
        pattern = re.compile(rf"(?<![\w.]){re.escape(tensor)}\s*\.\s*grad\b(?!\s*=[^=])")
        source = pattern.sub(lambda m: f"({name})".ljust(len(m.group(0))), source)
    if source == cell.source:
        return cell.source, cell.tree
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return cell.source, cell.tree
    given = ", ".join(f"{n[1:]}.grad" for n in provided)
    notes.append(f"exercise {number}: cell {cell.number} reads {given}, the gradient this exercise is given: "
                 f"the grader supplies the true {', '.join(provided)} there")
    return source, tree


def build_plan(cells) -> LecturePlan:
    """The graded exercises' sections (and the prelude) of a lecture-format notebook."""
    sections: dict[str, Section] = {}
    prelude: list[dict] = []
    prelude_nodes: list[tuple[int, ast.stmt, str]] = []
    headers: list[tuple[int, int]] = []
    current: int | None = None     # the exercise whose section we are in (None: before the first header)

    def section(number: int | None) -> Section | None:
        if number not in GRADED:
            return None
        return sections.setdefault(GRADED[number], Section(number, GRADED[number]))

    code_numbers = _code_header_numbers(cells)
    placed, roles = _placement(cells, code_numbers)
    skipped_defs: dict[int, dict[str, str]] = {}   # per section: functions not run -> why
    provided_notes: list[str] = []
    checkers = {node.name for cell in cells if cell.kind == "code" and cell.tree is not None
                for node in cell.tree.body if isinstance(node, ast.FunctionDef) and reads_grad(node)}
    for cell in cells:
        lead = _cell_header(cell, code_numbers)
        if lead is not None:
            current = lead
            headers.append((cell.number, lead))
            section(current)
        if cell.kind != "code":
            continue
        where = placed.get(cell.number, current)
        if cell.tree is None:
            target = section(where)
            if target is not None and cell.error:
                target.broken.append((cell.number, f"cell {cell.number} does not parse ({cell.error}), "
                                                   "so none of it ran"))
            continue
        mids = _mid_headers(cell)
        source, tree = cell.source, cell.tree
        if not mids and where in GRADED and PROVIDED.get(GRADED[where]):
            source, tree = _given_reads(cell, where, PROVIDED[GRADED[where]], provided_notes)
        runs: dict[int | None, list[list[int]]] = {}
        members = {where} if where is not None else set()
        for node in units(tree.body):
            while mids and mids[0][0] <= node.lineno:
                current = where = mids.pop(0)[1]
                headers.append((cell.number, current))
                members.add(current)
            if where is None:
                if _is_prelude(node):
                    runs.setdefault(None, []).append([node.lineno, node.col_offset])
                continue
            target = section(where)
            if target is None:
                continue
            target.statements.append((cell.number, node, source))
            reason = skip_reason(node, checkers)
            not_run = skipped_defs.setdefault(where, {})
            if reason is None and not any(n.startswith("d") for n in _top_level_targets(node)):
                used = sorted(_loads_of(node) & set(not_run))
                if used:  # split_loss('val') after its definition was left out
                    reason = f"uses {used[0]}, which is not run ({not_run[used[0]]})"
            if reason is not None and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                not_run[node.name] = reason
            if reason is None:
                runs.setdefault(where, []).append([node.lineno, node.col_offset])
            else:
                target.skipped.append(Skipped(cell.number, node.lineno, reason, sorted(assigned_names(node))))
        for _, number in mids:  # headers after the last statement
            current = number
            headers.append((cell.number, number))
            members.add(number)
        if runs.get(None):
            chosen = {tuple(position) for position in runs[None]}
            names = sorted({name for node in units(tree.body) if (node.lineno, node.col_offset) in chosen
                            for name in _bound(node)})
            prelude.append({"cell": cell.number, "source": source, "run": runs[None], "names": names})
            prelude_nodes += [(cell.number, node, source) for node in units(tree.body)
                              if (node.lineno, node.col_offset) in chosen]
        for number in sorted(n for n in members if n is not None):
            target = section(number)
            if target is not None:  # a cell with nothing to run still belongs to its section
                target.cells.append({"cell": cell.number, "source": source, "run": runs.get(number, [])})

    last = max((c["cell"] for sec in sections.values() for c in sec.cells), default=0)
    prelude = [entry for entry in prelude if entry["cell"] < last]  # only what the exercises come after
    for sec in sections.values():
        sec.elsewhere = {name for other in sections.values() if other is not sec
                         for _, node, _ in other.statements for name in assigned_names(node)}
    plan = LecturePlan(sections=sections, prelude=prelude, headers=headers, prelude_nodes=prelude_nodes,
                       training_cells=sorted(n for n, role in roles.items() if role == 4))
    _found_notes(plan, placed, roles, cells)
    plan.notes += provided_notes
    name_maps(plan, cells)
    for sec in sections.values():
        sec.autograd = autograd_uses(sec)
        for name in PROVIDED.get(sec.ex_id, ()):
            reads = [(c, node) for c, node, src in sec.statements if name in assigned_names(node) and reads_grad(node)]
            if reads:
                plan.notes.append(f"exercise {sec.number}: cell {reads[0][0]} line {reads[0][1].lineno} reads "
                                  f"autograd's gradient for {name}; the grader supplies the true {name} there")
        skipped = [s for s in sec.skipped if not s.reason.startswith("a cmp")]
        if skipped:
            shown = "; ".join(f"cell {s.cell} line {s.line} ({s.reason})" for s in skipped[:6])
            more = f" and {len(skipped) - 6} more" if len(skipped) > 6 else ""
            plan.notes.append(f"exercise {sec.number}: not run: {shown}{more}")
        plan.notes += [f"exercise {sec.number}: {message}" for _, message in sec.broken]
    for number, ex_id in GRADED.items():
        if ex_id not in sections:
            plan.notes.append(f"not found in the notebook: exercise {number} ({NOT_FOUND[number]})")
    from grader.submission.lecture_train import find_train  # exercise 4: found and planned there

    plan.train = find_train(cells)
    plan.notes += plan.train.notes() if plan.train is not None else []
    return plan


NOT_FOUND = {1: "no '# Exercise 1' header, and no cell assigns its gradients dlogprobs ... dC",
             2: "no '# Exercise 2' header, and no cell computes dlogits in one go from logits",
             3: "no '# Exercise 3' header, and no cell computes dhprebn in one go from dhpreact"}
WHAT = {1: ("assigns its gradients", "assign its gradients"), 2: ("computes dlogits in one go", "compute dlogits in one go"),
        3: ("computes dhprebn in one go", "compute dhprebn in one go")}


def _spans(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers[:8]) + (f" and {len(numbers) - 8} more" if len(numbers) > 8 else "")


def _cells_do(numbers: list[int], what: tuple[str, str]) -> str:
    """`cell 11 assigns ...` / `cells 11, 12 assign ...`."""
    return f"cell {numbers[0]} {what[0]}" if len(numbers) == 1 else f"cells {_spans(numbers)} {what[1]}"


def _found_notes(plan: LecturePlan, placed: dict, roles: dict, cells) -> None:
    """What the grader assumed about where the work is, in the notes."""
    by_cell = {cell.number: cell for cell in cells}
    headed = {n for _, n in plan.headers}
    for cell_number, number in plan.headers:
        cell = by_cell.get(cell_number)
        text = (cell.raw if cell is not None else "").strip().splitlines()
        first = next((line.strip() for line in text if line.strip()), "")
        word = re.search(r"ex[a-z]{3,9}", first, re.IGNORECASE)
        if number in GRADED and word and word.group(0).lower() != "exercise":
            plan.notes.append(f"exercise {number}: cell {cell_number}'s header {first[:60]!r} read as "
                              f"'Exercise {number}'")
    for number, ex_id in GRADED.items():
        sec = plan.sections.get(ex_id)
        if sec is None:
            continue
        by_code = [c for c in sec.cell_numbers if placed.get(c) == number and roles.get(c) == number]
        if number not in headed and by_code:
            plan.notes.append(f"exercise {number}: no '# Exercise {number}' header; {_cells_do(by_code, WHAT[number])}, "
                              f"so {'it was' if len(by_code) == 1 else 'they were'} graded as exercise {number}")
        elif by_code:
            first_header = min(c for c, n in plan.headers if n == number)
            before = [c for c in by_code if c < first_header]
            if before:
                come = "comes" if len(before) == 1 else "come"
                plan.notes.append(f"exercise {number}: {'cell' if len(before) == 1 else 'cells'} {_spans(before)} "
                                  f"{come} before its header (cell {first_header}) and "
                                  f"{WHAT[number][len(before) > 1]}: graded as exercise {number}")
    atomic = plan.sections.get("atomic")
    for cell_number in atomic.cell_numbers if atomic is not None else []:
        under = [n for c, n in plan.headers if c <= cell_number]
        if under and under[-1] in (2, 3) and placed.get(cell_number) == 1:
            plan.notes.append(f"exercise 1: cell {cell_number}, under exercise {under[-1]}'s header, assigns only "
                              "exercise 1's gradients: graded as exercise 1, after its earlier cells")
    if plan.training_cells:
        plan.notes.append(f"exercise 4: {_cells_do(plan.training_cells, ('trains the network', 'train the network'))}; "
                          "that is not part of exercises 1 to 3")


# ---------------------------------------------------------------------------
# Grading: cases, plan entries for the worker, messages

def lecture_cases(cases) -> list:
    """The cases the lecture's cells can run on: the public `lecture` case and hidden cases of its shape."""
    def lecture_shaped(c):
        return all(getattr(c.spec, k) == v for k, v in LECTURE_SHAPE.items())

    public = [c for c in cases if not c.spec.hidden and c.spec.name == "lecture"]
    public = public or [c for c in cases if not c.spec.hidden and lecture_shaped(c)]
    return public + [c for c in cases if c.spec.hidden and lecture_shaped(c)]


def plan_entries(plan: LecturePlan, timeout: float, n_cases: int) -> dict[str, dict]:
    entries = {}
    budget = 0.85 * timeout / max(1, n_cases)
    for ex_id, sec in plan.sections.items():
        entries[ex_id] = {"mode": "lecture", "number": sec.number, "cells": sec.cells,
                          "prelude": section_prelude(plan, sec),
                          "provided": list(PROVIDED.get(ex_id, ())), "expected": list(EXPECTED[ex_id]),
                          "aliases": sec.aliases, "forward_aliases": sec.forward_aliases,
                          "forward_cell": sec.forward_cell,
                          "case_budget": budget, "statement_timeout": max(1.0, min(10.0, budget / 2))}
    if plan.train is not None:  # exercise 4 (hook): grader.submission.lecture_train / grader.sandbox.inside.train_loop
        from grader.submission.lecture_train import plan_entry

        entries["train"] = plan_entry(plan.train, timeout, n_cases)
    return entries


KNOWN_GLOBALS = {"torch", "F", "cmp", "n", "batch_size", "vocab_size", "block_size", "n_embd", "n_hidden", "g",
                 "itos", "stoi", "chars", "parameters", "loss"}


def _bound(node) -> set[str]:
    names = assigned_names(node)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
    loads = set()
    for sub in ast.walk(node):  # function arguments; the names read, kept for name_maps
        if isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
            loads.add(sub.id)
    node._grader_loads = loads
    return names


def name_maps(plan: LecturePlan, cells) -> None:
    """The student's names for each section: answers by their cmp lines, renamed forward tensors.

    `aliases`: lecture gradient -> the student's variables their cmp lines compare with it
    (`cmp('logit_maxes', dlogits_maxes, logit_maxes)`); `forward_aliases`: a name the cells read but
    nothing defines -> the lecture tensor it stands for (`Y_batch` -> `Yb`), from the cmp lines or
    the name itself.
    """
    from grader.submission.lecture_find import LECTURE_NAMES, cmp_calls, forward_name

    calls = [call for cell in cells for call in cmp_calls(cell)]
    builtin_names = set(dir(builtins))
    prelude_names = set()
    for entry in plan.prelude:
        prelude_names |= set(entry.get("names", []))
    for sec in plan.sections.values():
        own = set(sec.cell_numbers)
        ordered = sorted(calls, key=lambda c: (c.cell not in own, c.commented, -c.cell, -c.line))
        for call in ordered:
            grad = call.gradient
            if grad in EXPECTED[sec.ex_id] and call.answer != "d" + grad:
                sec.aliases.setdefault(grad, [])
                if call.answer not in sec.aliases[grad]:
                    sec.aliases[grad].append(call.answer)
            if grad is not None and call.tensor not in LECTURE_NAMES:
                sec.forward_aliases.setdefault(call.tensor, grad)
        bound = set(prelude_names) | KNOWN_GLOBALS | LECTURE_NAMES | set(PROVIDED.get(sec.ex_id, ()))
        loads = set()
        for _, node, _ in sec.statements:
            bound |= _bound(node)
            loads |= getattr(node, "_grader_loads", set())
        for name in sorted(loads - bound - builtin_names):
            lecture = forward_name(name)
            if lecture is not None and not name.startswith("d"):
                sec.forward_aliases.setdefault(name, lecture)
        unknown = sorted(n for n in loads - bound - builtin_names - set(sec.forward_aliases) if not n.startswith("d"))
        if unknown:
            sec.forward_cell = _forward_cell(plan, cells, sec, set(unknown))
        for student, lecture in sorted(sec.forward_aliases.items()):  # dh_pre_act for h_pre_act's gradient
            if lecture in EXPECTED[sec.ex_id] and "d" + student not in sec.aliases.get(lecture, []):
                sec.aliases.setdefault(lecture, []).append("d" + student)
        if sec.forward_aliases:
            shown = ", ".join(f"{k} as {v}" for k, v in sorted(sec.forward_aliases.items())[:8])
            plan.notes.append(f"exercise {sec.number}: your names for the forward pass were read as the lecture's: "
                              f"{shown}")


def _forward_cell(plan: LecturePlan, cells, sec: Section, unknown: set[str]) -> dict | None:
    """The student's own forward-pass cell that defines names the exercise reads but nothing gives it.

    The worker runs it on the grader's parameters and batch (its inputs read as the lecture's by their
    names) and takes each of those names for the lecture tensor it equals."""
    from grader.submission.lecture_find import LECTURE_NAMES, forward_name

    in_sections = {n for other in plan.sections.values() for n in other.cell_numbers}
    first = min(sec.cell_numbers, default=0)
    for cell in reversed([c for c in cells if c.kind == "code" and c.tree is not None and c.number < first
                          and c.number not in in_sections and c.number not in plan.training_cells]):
        nodes = [node for node in units(cell.tree.body) if skip_reason(node) is None]
        assigned: set[str] = set()
        inputs: dict[str, str] = {}
        for node in nodes:
            for name in sorted(_loads_of(node) - assigned - set(dir(builtins)) - KNOWN_GLOBALS - LECTURE_NAMES):
                lecture = forward_name(name)
                if lecture is not None:
                    inputs.setdefault(name, lecture)
            assigned |= assigned_names(node)
        wanted = sorted(unknown & assigned)
        if wanted:
            return {"cell": cell.number, "source": cell.source, "inputs": inputs, "wanted": wanted,
                    "run": [[node.lineno, node.col_offset] for node in nodes]}
    return None


def _loads_of(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def near_matches(name: str, candidates) -> list[str]:
    """Variables whose names look like a typo of `name` (dlogits_maxes for dlogit_maxes)."""
    lowered = {c.lower(): c for c in candidates if c != name}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=2, cutoff=0.8)
    return [lowered[h] for h in hits]


def _where(cell: int, line: int) -> str:
    return f"cell {cell}, line {line}"


def missing_message(var: str, sec: Section, facts: dict) -> str:
    number = sec.number
    uses = [u for u in sec.autograd if var in u.names]
    if uses:
        u = uses[-1]
        if var in u.direct:
            return (f"{var} reads autograd's gradient ({u.text}, {_where(u.cell, u.line)}): the grader's tensors "
                    "carry no .grad, so compute it by hand")
        return (f"{var} is computed from autograd's gradient ({u.text}, {_where(u.cell, u.line)}), "
                "not by hand, so it was not graded as your work")
    for err in facts.get("errors", []):
        if var in err.get("names", []):
            return f"{var} was not computed: {_where(err['cell'], err['line'])} {err['what']}"
    for late in facts.get("late", []):
        if var in late.get("names", []):
            return (f"{var} was not computed: the exercise ran out of time before {_where(late['cell'], late['line'])} "
                    "(an earlier statement ran too long)")
    skipped = [s for s in sec.skipped if var in s.names]
    if skipped:
        s = skipped[-1]
        return (f"{var} is only computed in {_where(s.cell, s.line)}, which the grader does not run "
                f"({s.reason})")
    answers = {"d" + name for name in EXPECTED[sec.ex_id]}
    near = near_matches(var, [name for name in facts.get("defined", []) if name not in answers])
    if near:
        return f"{var} is not defined by exercise {number}'s cells; found {' and '.join(near)}: a typo?"
    if sec.broken:
        return f"{var} is not defined by exercise {number}'s cells ({sec.broken[0][1]})"
    extra = ""
    if var in sec.elsewhere:
        extra = " (each exercise runs on its own: a value from another exercise's cells does not count)"
    return f"{var} is not defined by exercise {number}'s cells{extra}"


def _final_autograd(var: str, sec: Section) -> bool:
    """The answer's final value comes from autograd's `.grad` (directly or through what it feeds)."""
    return any(var in use.names for use in sec.autograd)


def enrich_run(run, sec: Section) -> None:
    """Before scoring: messages for missing and None answers, written for this notebook."""
    for meta, _ in run.results.values():
        facts = meta.get("lecture") if isinstance(meta.get("lecture"), dict) else {}
        notes = meta.setdefault("notes", {})
        if not isinstance(notes, dict):
            continue
        for name in EXPECTED[sec.ex_id]:
            var = "d" + name
            note = notes.get(name)
            if _final_autograd(var, sec):  # even if an earlier line computed it by hand: the final value counts
                notes[name] = {"status": "not_allowed", "message": missing_message(var, sec, facts)}
            elif note is None:
                notes[name] = {"status": "missing", "message": missing_message(var, sec, facts)}
            elif note.get("status") == "not_implemented":
                notes[name] = {"status": "not_implemented", "message": f"{var} is still None: not attempted yet"}


def annotate_result(result, sec: Section, run, nb_name: str) -> list:
    """After scoring: notes on passing answers, autograd reads, cell names. Returns integrity findings."""
    from grader.course.registry import EXERCISES  # not at the top: the worker imports this module

    from grader.report import IntegrityFinding

    result.file = nb_name
    cells = sec.cell_numbers
    result.function = f"cell {cells[0]}" if len(cells) == 1 else f"cells {', '.join(map(str, cells))}"
    zero = set()
    changed = set()
    aliases: dict[str, tuple[str, str]] = {}
    raised: dict[str, dict] = {}   # answer -> the first statement that raised while changing it
    public = {case.case for check in result.checks for case in check.cases if case.visibility == "public"}
    for case_name, (meta, _) in run.results.items():
        facts = meta.get("lecture") if isinstance(meta.get("lecture"), dict) else {}
        if case_name not in public:
            facts = {k: v for k, v in facts.items() if k in ("zero_filled", "changed")}  # nothing of a hidden case's text
        zero |= set(facts.get("zero_filled", []))
        changed |= set(facts.get("changed", []))
        found = facts.get("aliases") if isinstance(facts.get("aliases"), dict) else {}
        for name, pair in found.items():
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair):
                aliases.setdefault(name, (pair[0][:60], pair[1]))
        for err in facts.get("errors", []) if isinstance(facts.get("errors"), list) else []:
            if isinstance(err, dict):
                for var in err.get("names", []) if isinstance(err.get("names"), list) else []:
                    raised.setdefault(var, err)
    flagged = {}
    for use in sec.autograd:
        for var in use.names:
            flagged.setdefault(var, use)
    for check in result.checks:
        var = "d" + check.name
        for case in check.cases:
            if check.name in zero and case.passed:
                case.note = (f"{var} is not defined; it is exactly zero (subtracting the max does not change "
                             "the softmax), so leaving it out is right")
            if var in flagged and not case.passed:
                case.status = "not_allowed"
            if check.name in aliases and case.passed:
                alt, why = aliases[check.name]
                case.note = (f"read from {alt}: your cmp line compares it with {check.name}" if why == "cmp" else
                             f"read from {alt}, taken for {var} (the name is close and nothing else matches)")
        if check.name in zero and check.status == "passed":
            check.hint = check.hint or "not defined, and zero is the right answer"
        err = raised.get(var)
        if err is not None and check.status != "passed" and var not in flagged:
            # The value was left half-computed by a statement that raised: that error is the cause.
            text = (f"{var} is not finished: {_where(err.get('cell', 0), err.get('line', 0))} "
                    f"{str(err.get('what', 'raised'))[:200]}, so that line's change to {var} never happened")
            check.message, check.hint = text, None
            for case in check.cases:
                if not case.passed and case.status in ("wrong_values", "wrong_shape", "not_finite"):
                    case.message, case.hint = (text if case.visibility == "public" else case.message), None
    findings = []
    for use in sec.autograd:
        findings.append(IntegrityFinding(exercise=sec.ex_id, file=f"cell {use.cell}", line=use.line,
                                         pattern=".grad",
                                         message=f"exercise {sec.number} reads autograd's gradient ({use.text})"))
    if sec.autograd:
        first = sec.autograd[0]
        result.message = (f"uses autograd's gradient ({first.text}, {_where(first.cell, first.line)}); "
                          + result.message)
    if result.status in ("timeout", "crashed"):
        result.message = result.message.replace(EXERCISES[sec.ex_id].function, f"exercise {sec.number}'s cells", 1)
    if result.checks and all(c.status == "failed" for c in result.checks) and all(
            case.status == "missing" for c in result.checks for case in c.cases):
        result.message = (f"not attempted: exercise {sec.number}'s cells define none of its gradients "
                          f"({', '.join('d' + c.name for c in result.checks[:3])}{', ...' if len(result.checks) > 3 else ''})")
    if changed:
        result.message += f" (note: these cells reassign forward variables: {', '.join(sorted(changed)[:6])})"
    return findings


def _run_notes(run, sec: Section, cases) -> list[str]:
    """What went wrong while the cells ran on the first public case (never a hidden one), for the report."""
    public = [c.spec.name for c in cases if not c.spec.hidden]
    frame = next((run.results[name] for name in public if name in run.results), None)
    facts = frame[0].get("lecture") if frame and isinstance(frame[0].get("lecture"), dict) else {}
    notes = [f"exercise {sec.number}: {_where(e['cell'], e['line'])} {e['what']}"
             for e in facts.get("errors", [])[:5] if isinstance(e, dict)]
    found = facts.get("forward_map") if isinstance(facts.get("forward_map"), dict) else {}
    if found and sec.forward_cell:
        shown = ", ".join(f"{k} as {v}" for k, v in sorted(found.items())[:8] if isinstance(v, str))
        notes.append(f"exercise {sec.number}: your forward pass (cell {sec.forward_cell['cell']}) was run on the "
                     f"grader's batch to read your names: {shown}")
    late = facts.get("late", [])
    if late:
        notes.append(f"exercise {sec.number}: {len(late)} statement(s) not run: the exercise ran out of time")
    return notes


def _segment(source: str, node) -> list[tuple[int, str]]:
    """(cell line, text) of one planned statement, its block indentation removed."""
    lines = source.splitlines()
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    out = []
    for number in range(start, (node.end_lineno or node.lineno) + 1):
        text = lines[number - 1] if number - 1 < len(lines) else ""
        out.append((number, text[node.col_offset:] if not text[:node.col_offset].strip() else text))
    return out


def scan_plan(plan: LecturePlan, allow=()) -> list:
    """The same static check as for .py files (grader.submission.integrity.scan) on exactly the statements that run.

    Each exercise's statements (and the prelude it runs) become one file named like the exercise's
    own, so a finding costs that exercise; findings point back at the cell and line."""
    from grader.course.registry import EXERCISES  # not at the top: the worker imports this module

    from grader.submission.integrity import scan

    files: dict[str, str] = {}
    origins: dict[str, list[tuple[int, int]]] = {}
    for ex_id, sec in plan.sections.items():
        entries = section_prelude(plan, sec) + sec.cells
        text, origin, plain, plain_origin = [], [], [], []
        for entry in entries:
            wanted = {tuple(position) for position in entry.get("run", [])}
            if not wanted:
                continue
            try:
                tree = ast.parse(entry["source"])
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            for node in units(tree.body):
                if (node.lineno, node.col_offset) not in wanted:
                    continue
                for number, line in _segment(entry["source"], node):
                    text.append(line)
                    origin.append((entry["cell"], number))
                for line in ast.unparse(node).splitlines():  # a fallback that always parses
                    plain.append(line)
                    plain_origin.append((entry["cell"], node.lineno))
        source = "\n".join(text) + "\n"
        try:
            ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            source, origin = "\n".join(plain) + "\n", plain_origin
        name = EXERCISES[ex_id].file
        files[name], origins[name] = source, origin
    findings = scan(files, allow)
    for finding in findings:
        origin = origins.get(finding.file, [])
        if finding.line and 0 < finding.line <= len(origin):
            cell, line = origin[finding.line - 1]
            old = f"{finding.file} line {finding.line}"
            finding.file, finding.line = f"cell {cell}", line
            finding.message = finding.message.replace(old, f"cell {cell}, line {line}", 1)
    return findings


def score(plan: LecturePlan, enabled: list[str], config, cases, outcome, nb_name: str, static=()):
    """ExerciseResults for a lecture notebook, plus integrity findings (`static`: scan_plan's)."""
    from grader.course.registry import EXERCISES  # not at the top: the worker imports this module

    from grader.report import ExerciseResult
    from grader.scoring.score import score_exercise, score_not_allowed

    results, findings = [], []
    for ex_id in enabled:
        ex = EXERCISES[ex_id]
        blocked = [f.message for f in static if f.exercise == ex_id]
        if blocked and (ex_id in plan.sections or ex_id == "train" and plan.train is not None):
            result = score_not_allowed(ex_id, config, cases, blocked, outcome.exercises.get(ex_id))
            cells = plan.sections[ex_id].cell_numbers if ex_id in plan.sections else plan.train.cells
            result.file = nb_name
            result.function = f"cell {cells[0]}" if len(cells) == 1 else f"cells {', '.join(map(str, cells))}"
            results.append(result)
            continue
        if ex_id == "train":  # exercise 4: graded by grader.submission.lecture_train
            from grader.submission import lecture_train

            results.append(lecture_train.score(plan.train, config, cases, outcome.exercises.get(ex_id), nb_name))
            findings += lecture_train.findings(plan.train)
            continue
        if ex_id in NOT_IN_FORMAT:
            results.append(ExerciseResult(id=ex_id, title=ex.title, file=nb_name, function="-", score=0.0,
                                          max_score=0.0, status="not_submitted", message=NOT_IN_FORMAT[ex_id],
                                          checks=[]))
            continue
        sec = plan.sections.get(ex_id)
        if sec is None:
            result = score_exercise(ex_id, config, cases, None)
            message = f"exercise {NUMBER[ex_id]} is not in the notebook ({NOT_FOUND[NUMBER[ex_id]]})"
            result.message, result.file, result.function = message, nb_name, "-"
            for check in result.checks:
                check.message = message
            results.append(result)
            continue
        run = outcome.exercises.get(ex_id)
        if run is not None:
            enrich_run(run, sec)
            plan.notes += _run_notes(run, sec, cases)
        result = score_exercise(ex_id, config, cases, run)
        if run is not None:
            findings += annotate_result(result, sec, run, nb_name)
        results.append(result)
    return results, findings


NO_LECTURE_CASE = ("this is the lecture's notebook, whose cells use the lecture's sizes, but grading.yaml has no "
                   "public case named 'lecture' or with the lecture's shape (n=32, block=3, n_embd=10, "
                   "n_hidden=64, vocab=27)")


def has_lecture_case(config) -> bool:
    return any(c.name == "lecture" or all(getattr(c, k) == v for k, v in LECTURE_SHAPE.items())
               for c in config.cases)
