"""Exercise 4 of the lecture's notebook (the training loop with a hand-written backward pass), graded as `train`.

Finding it: the training loop is a `for`/`while` whose body updates the parameters
(`p.data += -lr * grad`, `p.data -= ...`, `p -= ...` under `torch.no_grad()`) and runs a
forward pass; the loop whose update uses hand-computed gradients is exercise 4 (the last
one, if several). A loop that still updates with `p.grad` is the untouched starter.

Running it (worker side: grader.sandbox.inside.train_loop): the student's own cell, in a fresh namespace
holding the grader's data (`Xtr`, `Ytr` from the case; no names.txt) and the lecture's
globals: the statements before the loop (their re-initialisation, their `n_hidden`), then
the loop itself with its iterable capped at `train.steps` iterations. Autograd plumbing
(`loss.backward()`, `p.grad = None`, `requires_grad`), plotting and data loading are not
run; everything else is. At each step the parameters, the hand-computed gradients, the
batch and the learning rate go back.

Grading (`grader.scoring.lecture_train`, in the grading process): each step's gradients against
autograd at the same parameters and batch, and the SGD trajectory from the student's initial
parameters over those steps, with the `train` checks and points of grading.yaml.

Imports only the standard library at module level: the planner runs on every notebook.
"""

import ast
from dataclasses import dataclass, field

from grader.course.mlp import PARAMS
from grader.sandbox.inside.statements import attrs as _attrs
from grader.sandbox.inside.statements import names as _names
from grader.submission.lecture.headers import leading_header
from grader.submission.lecture.policy import EXERCISE_4, autograd_reason, reads_grad, tooling_reason

GRAD_NAMES = tuple("d" + p for p in PARAMS)
FORWARD_HINTS = {"cross_entropy", "Xtr", "Ytr", "logits"}


@dataclass
class Skip:
    line: int
    col: int
    reason: str
    names: list[str] = field(default_factory=list)   # variables it would have set (dC = C.grad)
    cell: int = 0


@dataclass
class TrainPlan:
    """Exercise 4's loop: where it is and how the worker runs it."""

    cell: int                                   # the loop's cell (1-based, as the student counts)
    source: str
    unit: tuple[int, int]                       # the top-level statement holding the loop (line, col)
    loop: tuple[int, int]                       # the for/while itself
    update: str                                 # "hand" or "autograd" (the untouched starter: p.grad)
    update_line: int
    update_text: str
    setup: list[dict] = field(default_factory=list)    # {"cell", "source", "run": [[line, col], ...]}
    prelude: list[dict] = field(default_factory=list)  # imports, defs and constants of earlier cells
    skips: list[Skip] = field(default_factory=list)    # inside the loop: not run
    setup_skips: list[Skip] = field(default_factory=list)
    lr_name: str = "lr"
    grads_name: str = "grads"
    xb_name: str = "Xb"
    yb_name: str = "Yb"
    data_names: dict = field(default_factory=dict)     # the student's names for the splits: X_train -> Xtr
    calls: list = field(default_factory=list)          # the loop is in a function of the cell: its calls after it

    @property
    def cells(self) -> list[int]:
        return sorted({self.cell} | {entry["cell"] for entry in self.setup})

    def notes(self) -> list[str]:
        out = [f"exercise 4: the training loop of cell {self.cell} (line {self.loop[0]}) runs for a few capped "
               "steps on the grader's data"]
        shown = [s for s in self.setup_skips + self.skips][:6]
        if shown:
            out.append("exercise 4: not run: " + "; ".join(f"cell {s.cell} line {s.line} ({s.reason})" for s in shown))
        if self.data_names:
            out.append("exercise 4: your names for the data splits were read as the lecture's: "
                       + ", ".join(f"{k} as {v}" for k, v in sorted(self.data_names.items())))
        return out


# ---------------------------------------------------------------------------
# Finding the loop

def _stores(node) -> list[str]:
    return sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)})


def open_units(body: list) -> list:
    """Top-level statements, `with` blocks opened up (`with torch.no_grad():` around the loop)."""
    out = []
    for node in body:
        if isinstance(node, ast.With):
            out += open_units(node.body)
        else:
            out.append(node)
    return out


def _zip_vars(loop) -> set[str]:
    """Loop variables of `for p, grad in zip(...)` inside `loop` (the parameter side)."""
    out = set()
    for node in ast.walk(loop):
        if (isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name)
                and node.iter.func.id == "zip"):
            first = node.target.elts[0] if isinstance(node.target, ast.Tuple) and node.target.elts else node.target
            if isinstance(first, ast.Name):
                out.add(first.id)
    return out


def _updates(loop) -> list[ast.stmt]:
    """The statements that update the parameters in place: `p.data += -lr * grad` and its spellings."""
    params = _zip_vars(loop) | set(PARAMS)
    found = []
    for node in ast.walk(loop):
        if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Sub)):
            target = node.target
            if (isinstance(target, ast.Attribute) and target.attr == "data") or \
                    (isinstance(target, ast.Name) and target.id in params):
                found.append(node)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "data"
                                                  for t in node.targets):
            found.append(node)
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
              and isinstance(node.value.func, ast.Attribute) and node.value.func.attr in ("add_", "sub_")
              and isinstance(node.value.func.value, (ast.Name, ast.Attribute))):
            base = node.value.func.value
            if (isinstance(base, ast.Attribute) and base.attr == "data") or \
                    (isinstance(base, ast.Name) and base.id in params):
                found.append(node)
    return found


def _training_loop(unit) -> tuple[ast.stmt, list[ast.stmt]] | None:
    """The innermost loop of a top-level statement that updates parameters and runs a forward pass.

    Innermost: in `for epoch in ...: for i in range(max_steps): ...` the steps are the inner loop's.
    """
    found = [node for node in ast.walk(unit) if isinstance(node, (ast.For, ast.While)) and _updates(node)
             and (_names(node) | _attrs(node)) & FORWARD_HINTS]
    inner = [loop for loop in found if not any(other is not loop and other in ast.walk(loop) for other in found)]
    return (inner[-1], _updates(inner[-1])) if inner else None


def _update_value(node):
    return node.value.args[0] if isinstance(node, ast.Expr) and node.value.args else getattr(node, "value", node)


def _lr_name(updates, loop) -> str:
    """The learning rate's variable: the name in the update besides the parameter and its gradient."""
    zip_names = set()
    for node in ast.walk(loop):
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and getattr(node.iter.func, "id", "") == "zip":
            zip_names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    for update in updates:
        names = _names(_update_value(update)) - zip_names - set(PARAMS) - set(GRAD_NAMES)
        if len(names) == 1:
            return names.pop()
    return "lr"


def _grads_name(loop) -> str:
    for node in ast.walk(loop):
        if (isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and getattr(node.iter.func, "id", "") == "zip"
                and len(node.iter.args) == 2 and isinstance(node.iter.args[1], ast.Name)):
            return node.iter.args[1].id
    return "grads"


def _batch_names(loop) -> tuple[str, str]:
    """The batch's variables as the student's forward pass uses them: `C[Xb]`, `F.cross_entropy(logits, Yb)`."""
    xb, yb = "Xb", "Yb"
    for node in ast.walk(loop):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "C"
                and isinstance(node.slice, ast.Name)):
            xb = node.slice.id
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cross_entropy"
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Name)):
            yb = node.args[1].id
    return xb, yb


def _skip_reason(node, inside_loop: bool) -> str | None:
    """Why a statement of exercise 4's cell is not run (None: run it)."""
    reason = autograd_reason(node, EXERCISE_4) or tooling_reason(node, EXERCISE_4)
    if reason is None and not inside_loop and set(_stores(node)) & EXERCISE_4.given:
        return "data loading (the grader provides Xtr and Ytr)"
    return reason


def _loop_skips(loop, cell: int) -> list[Skip]:
    """Statements inside the loop that are not run, outermost first (a skipped block is skipped whole)."""
    out = []

    def visit(body):
        for node in body:
            reason = _skip_reason(node, inside_loop=True)
            compound = isinstance(node, (ast.For, ast.While, ast.If, ast.With, ast.Try))
            if reason is not None and (not compound or _all_skipped(node)):
                names = [n for n in _stores(node) if n not in ("p", "grad")]
                out.append(Skip(node.lineno, node.col_offset, reason, names, cell))
                continue
            for attr in ("body", "orelse", "finalbody"):
                visit(getattr(node, attr, []) or [])
            for handler in getattr(node, "handlers", []) or []:
                visit(handler.body)

    def _all_skipped(node) -> bool:
        simple = [n for n in ast.walk(node) if isinstance(n, ast.stmt)
                  and not isinstance(n, (ast.For, ast.While, ast.If, ast.With, ast.Try, ast.Pass))]
        return all(_skip_reason(n, inside_loop=True) for n in simple)

    visit(loop.body)
    return out


def _is_constant(node) -> bool:
    return all(isinstance(n, (ast.Constant, ast.UnaryOp, ast.BinOp, ast.operator, ast.unaryop, ast.Tuple,
                              ast.Load)) for n in ast.walk(node))


def _prelude_statement(node) -> bool:
    """What earlier cells give exercise 4: imports, functions (not `cmp`), literal constants (`BATCH_SIZE = 32`)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return _skip_reason(node, inside_loop=False) is None
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name != "cmp"
    return (isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets)
            and _is_constant(node.value))


def find_train(cells) -> TrainPlan | None:
    """Exercise 4's training loop in the notebook's cells, or None when there is none."""
    chosen = None  # (cell, unit, loop, updates, hand)
    for cell in cells:
        if cell.kind != "code" or cell.tree is None:
            continue
        for unit in open_units(cell.tree.body):
            found = _training_loop(unit)
            if found is None:
                continue
            loop, updates = found
            hand = any(not reads_grad(_update_value(u)) for u in updates)
            if chosen is None or hand or not chosen[4]:
                chosen = (cell, unit, loop, updates, hand)
    if chosen is None:
        return None
    cell, unit, loop, updates, hand = chosen
    active = [u for u in updates if not reads_grad(_update_value(u))] if hand else updates
    update = active[0]
    top = next(node for node in cell.tree.body if node.lineno <= unit.lineno <= (node.end_lineno or node.lineno))
    plan = TrainPlan(cell=cell.number, source=cell.source, unit=(top.lineno, top.col_offset),
                     loop=(loop.lineno, loop.col_offset), update="hand" if hand else "autograd",
                     update_line=update.lineno, update_text=(ast.get_source_segment(cell.source, update) or "")[:120],
                     lr_name=_lr_name(active, loop), grads_name=_grads_name(loop))
    plan.xb_name, plan.yb_name = _batch_names(loop)
    plan.data_names = dataset_names(cells)
    if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)):  # `def train(): for i in ...` then `train()`
        plan.calls = [[node.lineno, node.col_offset] for node in cell.tree.body
                      if node.lineno > (top.end_lineno or top.lineno) and top.name in _names(node)
                      and _skip_reason(node, inside_loop=False) is None]
    plan.skips = _loop_skips(loop, cell.number)

    # Set-up: the cell's statements before the loop, and the cells since a `# Exercise 4` header above it.
    position = next(i for i, c in enumerate(cells) if c.number == cell.number)
    start = position
    for i in range(position, max(-1, position - 6), -1):
        if cells[i].kind in ("code", "markdown") and leading_header(cells[i]) == 4:
            start = i
            break

    def setup_entry(other, stop=None):
        run = []
        for node in other.tree.body:
            if node is stop:
                break
            reason = _skip_reason(node, inside_loop=False)
            if reason is None and _training_loop(node) is None:
                run.append([node.lineno, node.col_offset])
            elif reason is not None:
                plan.setup_skips.append(Skip(node.lineno, node.col_offset, reason, _stores(node), other.number))
        if run:
            plan.setup.append({"cell": other.number, "source": other.source, "run": run})

    for other in cells[start:position + 1]:
        if other.kind == "code" and other.tree is not None:
            setup_entry(other, top if other is cell else None)
    assigned = {name for entry in plan.setup for name in _stores(_cell_tree(cells, entry["cell"]))}
    if not set(PARAMS) <= assigned:
        # No re-initialisation here: the parameters come from the last earlier cell that initialises them all.
        init = next((c for c in reversed(cells[:start]) if c.kind == "code" and c.tree is not None
                     and set(PARAMS) <= {n for node in c.tree.body for n in _stores(node)}), None)
        if init is not None:
            setup, plan.setup = plan.setup, []
            setup_entry(init)
            plan.setup += setup
    for other in cells[:start]:
        if other.kind != "code" or other.tree is None:
            continue
        run = [[node.lineno, node.col_offset] for node in other.tree.body if _prelude_statement(node)]
        if run:
            plan.prelude.append({"cell": other.number, "source": other.source, "run": run})
    return plan


SPLIT_NAMES = (("Xtr", "Ytr"), ("Xdev", "Ydev"), ("Xte", "Yte"))


def dataset_names(cells) -> dict[str, str]:
    """The student's names for the lecture's splits, from their data cell: `X_train, Y_train =
    build_dataset(words[:n1])` makes X_train the grader's Xtr (the splits in the order built)."""
    found: list[tuple[str, str]] = []
    for cell in cells:
        if cell.kind != "code" or cell.tree is None:
            continue
        for node in ast.walk(cell.tree):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple)
                    and len(node.targets[0].elts) == 2 and all(isinstance(e, ast.Name) for e in node.targets[0].elts)
                    and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)):
                continue
            builds = "dataset" in node.value.func.id.lower() or "words" in _names(node.value)
            pair = tuple(e.id for e in node.targets[0].elts)
            if builds and pair not in found:
                found.append(pair)
    out = {}
    for pair, lecture in zip(found, SPLIT_NAMES):
        for student, name in zip(pair, lecture):
            if student != name and student not in EXERCISE_4.given:
                out[student] = name
    return out


def _cell_tree(cells, number: int):
    return next(c.tree for c in cells if c.number == number)


def plan_entry(plan: TrainPlan, timeout: float, n_cases: int) -> dict:
    """The worker's instructions (grader.sandbox.inside.train_loop): plain JSON."""
    budget = 0.85 * timeout / max(1, n_cases)
    return {"mode": "lecture_train", "cell": plan.cell, "source": plan.source, "unit": list(plan.unit),
            "loop": list(plan.loop), "skip": [[s.line, s.col] for s in plan.skips], "setup": plan.setup,
            "prelude": plan.prelude, "lr_name": plan.lr_name, "grads_name": plan.grads_name,
            "xb_name": plan.xb_name, "yb_name": plan.yb_name, "data_names": plan.data_names, "calls": plan.calls, "case_budget": budget}
