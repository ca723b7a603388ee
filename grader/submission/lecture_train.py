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

Grading (here, in the grading process): each step's gradients against autograd at the
same parameters and batch, and the SGD trajectory from the student's initial parameters
over those steps, with the `train` checks and points of grading.yaml.

Imports only the standard library at module level: the planner runs on every notebook.
"""

import ast
from dataclasses import dataclass, field

from grader.course.mlp import PARAMS

from grader.course.registry import EXERCISES

from grader.course.spec import TRAJECTORY
from grader.submission.lecture import PLOT_NAMES, SKIP_IMPORTS, _attrs, _names  # the same facts as exercises 1-3

GRAD_NAMES = tuple("d" + p for p in PARAMS)
AUTOGRAD = {"backward", "retain_grad", "retains_grad", "requires_grad", "requires_grad_", "autograd", "grad_fn",
            "zero_grad"}
PLOT_ATTRS = {"imshow", "plot", "hist", "figure", "show"}
DATA_NAMES = {"open", "words", "build_dataset", "urllib", "requests", "wget", "subprocess"}
PROVIDED_DATA = {"Xtr", "Ytr", "Xdev", "Ydev", "Xte", "Yte", "Xval", "Yval"}
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

def _reads_grad(node) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "grad" and isinstance(n.ctx, ast.Load)
               for n in ast.walk(node))


def _touches_autograd(node) -> bool:
    """`.backward()`, `p.grad = None`, `requires_grad`, `torch.autograd`: the lecture's autograd plumbing."""
    return bool(_attrs(node) & AUTOGRAD) or any(
        isinstance(n, ast.Attribute) and n.attr == "grad" and isinstance(n.ctx, (ast.Store, ast.Del))
        for n in ast.walk(node))


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
    if _reads_grad(node):
        return "reads autograd's gradient (.grad)"
    if _touches_autograd(node):
        return "autograd (.backward, .grad, requires_grad)"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if any(m == s or m.startswith(s + ".") for m in modules for s in SKIP_IMPORTS):
            return "plotting or notebook tooling"
        return None
    names, attrs = _names(node), _attrs(node)
    strings = [s.value for s in ast.walk(node) if isinstance(s, ast.Constant) and isinstance(s.value, str)]
    if names & PLOT_NAMES or attrs & PLOT_ATTRS:
        return "plotting"
    if names & DATA_NAMES or any("names.txt" in s or "://" in s for s in strings):
        return "data loading"
    if not inside_loop and set(_stores(node)) & PROVIDED_DATA:
        return "data loading (the grader provides Xtr and Ytr)"
    return None


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


def _header_number(cell) -> int | None:
    for line in (cell.source or cell.raw or "").splitlines():
        stripped = line.strip().lstrip("#*").strip().lower()
        if not line.strip():
            continue
        if not line.strip().startswith(("#", "*")):
            return None
        for word in ("exercise", "excercise", "excercie", "exercice"):
            if stripped.startswith(word):
                rest = stripped[len(word):].strip(" #:")
                digits = rest[:1]
                return int(digits) if digits.isdigit() else None
    return None


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
            hand = any(not _reads_grad(_update_value(u)) for u in updates)
            if chosen is None or hand or not chosen[4]:
                chosen = (cell, unit, loop, updates, hand)
    if chosen is None:
        return None
    cell, unit, loop, updates, hand = chosen
    active = [u for u in updates if not _reads_grad(_update_value(u))] if hand else updates
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
        if cells[i].kind in ("code", "markdown") and _header_number(cells[i]) == 4:
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
            if student != name and student not in PROVIDED_DATA:
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


# ---------------------------------------------------------------------------
# Grading: autograd at the student's own parameters and batches

class Invalid(Exception):
    pass


def _where(cell: int, line: int) -> str:
    return f"cell {cell}, line {line}"


def _canonical(params: dict, Xb, Yb, vocab: int) -> dict:
    """The lecture's shapes for the forward pass, or Invalid saying what does not fit."""
    import torch

    missing = [k for k in PARAMS if k not in params]
    if missing:
        raise Invalid(f"the training loop has no {', '.join(missing)} (the lecture's parameters are "
                      f"{', '.join(PARAMS)})")
    C, W1 = params["C"], params["W1"]
    if Xb is None or Yb is None:
        raise Invalid("the loop's minibatch (Xb, Yb) was not found")
    if Xb.dtype not in (torch.int64, torch.int32) or Yb.dtype not in (torch.int64, torch.int32) or Xb.dim() != 2 \
            or Yb.dim() != 1 or Xb.shape[0] != Yb.shape[0] or Xb.shape[0] < 2:
        raise Invalid(f"the loop's minibatch is not the lecture's (Xb {tuple(Xb.shape)}, Yb {tuple(Yb.shape)})")
    if C.dim() != 2 or C.shape[0] != vocab or W1.dim() != 2 or W1.shape[0] != Xb.shape[1] * C.shape[1]:
        raise Invalid(f"C {tuple(C.shape)} and W1 {tuple(W1.shape)} do not fit the lecture's model "
                      f"(vocab {vocab}, block {Xb.shape[1]})")
    hidden = W1.shape[1]
    sizes = {"b1": hidden, "W2": hidden * vocab, "b2": vocab, "bngain": hidden, "bnbias": hidden}
    bad = [f"{k} {tuple(params[k].shape)}" for k, size in sizes.items() if params[k].numel() != size]
    if bad or params["W2"].shape[0] != hidden:
        raise Invalid(f"the parameters' shapes do not fit together ({', '.join(bad) or 'W2'}; n_hidden {hidden})")
    if int(Xb.min()) < 0 or int(Xb.max()) >= vocab or int(Yb.min()) < 0 or int(Yb.max()) >= vocab:
        raise Invalid("the loop's minibatch holds indices outside the vocabulary")
    if any(not params[k].is_floating_point() or not bool(torch.isfinite(params[k]).all()) for k in PARAMS):
        raise Invalid("a parameter is not a finite floating-point tensor")
    shapes = {"C": C.shape, "W1": W1.shape, "b1": (hidden,), "W2": (hidden, vocab), "b2": (vocab,),
              "bngain": (1, hidden), "bnbias": (1, hidden)}
    return shapes


def _autograd(params: dict, Xb, Yb, shapes: dict, dtype):
    """Autograd's gradient of the lecture's loss at these parameters and batch (in each parameter's own shape)."""
    import torch

    from grader.course import mlp

    leaves = {k: params[k].detach().clone().to(dtype).requires_grad_(True) for k in PARAMS}
    with torch.enable_grad():
        fwd = mlp.forward({k: leaves[k].reshape(shapes[k]) for k in PARAMS}, Xb.long(), Yb.long())
        fwd["logits"].retain_grad()
        fwd["loss"].backward()
    return {k: leaves[k].grad.detach() for k in PARAMS}, float(fwd["logits"].grad.abs().max())


@dataclass
class Steps:
    """One case's answers, by step."""

    params: list[dict]      # params[k]: before step k (k = 0 .. complete)
    grads: list[dict]       # grads[k]: the hand-computed gradients of step k (tensors only)
    notes: list[dict]       # notes[k][P]: the worker's note for grad k of P
    batches: list[tuple]
    lrs: list[float | None]
    complete: int
    partial: bool


def _steps(answers: dict, notes: dict, max_steps: int) -> Steps:
    info = answers.get("steps")
    complete = int(info[0]) if info is not None and info.numel() == 2 else 0
    partial = bool(info[1]) if info is not None and info.numel() == 2 else False
    complete = max(0, min(complete, max_steps))
    count = complete + (1 if partial else 0)
    params = [{k: answers[f"param{s}.{k}"] for k in PARAMS if f"param{s}.{k}" in answers}
              for s in range(complete + 1)]
    grads = [{k: answers[f"grad{s}.{k}"] for k in PARAMS if f"grad{s}.{k}" in answers} for s in range(count)]
    step_notes = [{k: notes.get(f"grad{s}.{k}") for k in PARAMS} for s in range(count)]
    batches = [(answers.get(f"Xb{s}"), answers.get(f"Yb{s}")) for s in range(count)]
    lrs = []
    for s in range(count):
        lr = answers.get(f"lr{s}")
        lrs.append(float(lr) if lr is not None and lr.numel() == 1 else None)
    return Steps(params, grads, step_notes, batches, lrs, complete, partial)


def _facts(meta: dict) -> dict:
    return meta.get("lecture") if isinstance(meta.get("lecture"), dict) else {}


def _first_error(facts: dict) -> str | None:
    for err in facts.get("errors", []) or []:
        if isinstance(err, dict):
            return f"{_where(err.get('cell', 0), err.get('line', 0))} {err.get('what', 'raised an error')}"
    return None


class TrainScorer:
    """`train`'s checks for a lecture notebook's loop, case by case."""

    def __init__(self, plan: TrainPlan, config, cases):
        from grader.scoring.score import ExerciseScorer

        self.plan = plan
        self.config = config
        self.cases = cases
        self.base = ExerciseScorer(EXERCISES["train"], config, cases)
        self.ex = EXERCISES["train"]

    def _result(self, case, check: str, status: str, message: str, **extra):
        from grader.report import CaseResult

        return CaseResult(case=case.spec.name, visibility="hidden" if case.spec.hidden else "public",
                          passed=status == "passed", status=status, message=message[:500], **extra)

    def _missing(self, var: str, facts: dict, step: int) -> str:
        for skip in self.plan.skips:
            if var in skip.names:
                return (f"{var} is only computed in {_where(skip.cell, skip.line)}, which the grader does not run "
                        f"({skip.reason}): compute it by hand")
        if step >= 0 and facts.get("partial_error"):
            error = str(facts["partial_error"])
            cause = next((s for s in self.plan.skips for name in s.names if f"name '{name}' is not defined" in error),
                         None)
            if cause is not None:  # e.g. `dhpreact = hpreact.grad` was not run, so what needs it raised
                return (f"{var} was not computed: in step {step + 1}, {error} ({_where(cause.cell, cause.line)}, "
                        f"which sets it, {cause.reason}, is not run: compute it by hand)")
            return f"{var} was not computed: in step {step + 1}, {error}"
        return (f"the loop defines no {var} (and {self.plan.grads_name} is not a list of the 7 gradients "
                "in the order of parameters)")

    def _update_message(self) -> str:
        return (f"the update ({_where(self.plan.cell, self.plan.update_line)}: {self.plan.update_text}) uses "
                "p.grad, autograd's gradient, which the grader does not compute: update with your own "
                "gradients (p.data += -lr * grad)")

    def case_results(self, case, run) -> dict:
        import torch

        from grader.scoring.score import HIDDEN_MESSAGES, BadAnswer, decode_answers

        frame = run.results.get(case.spec.name) if run is not None else None
        checks = self.ex.checks
        if frame is None:
            err = (run.error if run is not None else None) or {"status": "crashed",
                                                               "message": "no answer came back for this case"}
            status = err["status"] if err["status"] in HIDDEN_MESSAGES else "error"
            message = f"exercise 4's loop {err['message']}" if status in ("timeout", "crashed") else err["message"]
            return {c: self._result(case, c, status, message) for c in checks}
        meta, blob = frame
        facts = _facts(meta)
        if isinstance(meta.get("error"), dict):
            message = str(meta["error"].get("message", "the loop could not be run"))[:500]
            return {c: self._result(case, c, "error", message) for c in checks}
        K = self.config.train.steps
        keys = {"steps"} | {f"{kind}{s}" for kind in ("Xb", "Yb", "lr") for s in range(K)}
        keys |= {f"{kind}{s}.{p}" for kind in ("param", "grad") for s in range(K + 1) for p in PARAMS}
        try:
            max_numel = 16 * max(t.numel() for t in case.inputs.values()) + 4096
            answers = decode_answers(blob, keys, max_numel)
        except BadAnswer as err:
            return {c: self._result(case, c, "wrong_type", f"the answers were rejected: {err}") for c in checks}
        notes = meta.get("notes") if isinstance(meta.get("notes"), dict) else {}
        steps = _steps(answers, notes, K)
        error = _first_error(facts) or "the loop ran no step"
        dtype = case.inputs["C"].dtype
        vocab = case.inputs["C"].shape[0]
        count = len(steps.grads)
        if count == 0:
            return {c: self._result(case, c, "error", f"exercise 4's loop did not complete a step: {error}")
                    for c in checks}
        try:
            shapes = _canonical(steps.params[0], *steps.batches[0], vocab)
            refs = []
            for s in range(count):
                params = steps.params[s] if s < len(steps.params) else steps.params[-1]
                _canonical(params, *steps.batches[s], vocab)
                refs.append(_autograd(params, *steps.batches[s], shapes, dtype))
        except Invalid as err:
            return {c: self._result(case, c, "wrong_shape", f"exercise 4's loop: {err}") for c in checks}

        results = {}
        for name in self.ex.gradient_checks:
            results[name] = self._gradient(case, name, steps, refs, facts)
        results[TRAJECTORY] = self._trajectory(case, steps, shapes, dtype, facts, torch)
        return results

    def _gradient(self, case, name: str, steps: Steps, refs: list, facts: dict):
        from grader.scoring.compare import compare
        from grader.scoring.score import HIDDEN_MESSAGES

        var = "d" + name
        worst = 0.0
        notes = []
        for s, (ref, scale) in enumerate(refs):
            note = steps.notes[s].get(name)
            where = f"step {s + 1}: " if len(refs) > 1 else ""
            if note is None or note.get("status") == "missing":
                partial = s == steps.complete and steps.partial
                return self._result(case, name, "missing", where + self._missing(var, facts, s if partial else -1))
            if note.get("status") != "ok":
                status = note.get("status") if note.get("status") in HIDDEN_MESSAGES else "wrong_type"
                if status == "not_implemented":
                    return self._result(case, name, status, f"{var} is still None: not attempted yet")
                return self._result(case, name, status, where + str(note.get("message", status)))
            got = steps.grads[s].get(name)
            if got is None:
                return self._result(case, name, "crashed", "the answer was announced but not sent")
            verdict = compare(got, ref[name], scale=scale, rtol=self.config.tolerance)
            if not verdict.passed:
                return self._result(case, name, verdict.status, f"{where}{verdict.message}", exact=verdict.exact,
                                    max_abs_diff=verdict.max_abs_diff, rel_err=verdict.rel_err,
                                    got_shape=verdict.got_shape, expected_shape=list(ref[name].shape))
            worst = max(worst, verdict.rel_err or 0.0)
            if verdict.note:
                notes.append(verdict.note)
        n = len(refs)
        return self._result(case, name, "passed", f"matched autograd at {'each of the ' if n > 1 else ''}{n} "
                                                  f"step{'s' if n > 1 else ''} of your loop", rel_err=worst,
                            expected_shape=list(refs[0][0][name].shape), note=notes[0] if notes else None)

    def _trajectory(self, case, steps: Steps, shapes: dict, dtype, facts: dict, torch):
        from grader.scoring.compare import compare

        if steps.complete == 0:
            return self._result(case, TRAJECTORY, "error",
                                f"exercise 4's loop did not complete a step: {_first_error(facts) or 'no update'}")
        ref = {k: steps.params[0][k].detach().clone().to(dtype) for k in PARAMS}
        worst = 0.0
        for s in range(steps.complete):
            lr = steps.lrs[s]
            if lr is None or not lr > 0 or lr != lr or lr == float("inf"):
                lr = self.config.train.lr
            grads, _ = _autograd(ref, *steps.batches[s], shapes, dtype)
            ref = {k: ref[k] - lr * grads[k] for k in PARAMS}
            after = steps.params[s + 1]
            for k in PARAMS:
                got = after.get(k)
                if got is None:
                    return self._result(case, TRAJECTORY, "missing", f"the parameters after step {s + 1} were not sent")
                verdict = compare(got, ref[k], scale=float(ref[k].abs().max()), rtol=self.config.tolerance)
                if not verdict.passed:
                    if self.plan.update == "autograd":
                        return self._result(case, TRAJECTORY, "wrong_values", self._update_message())
                    return self._result(case, TRAJECTORY, verdict.status,
                                        f"after SGD step {s + 1} (lr {lr:g}), {k} left the autograd trajectory "
                                        f"({verdict.message})", max_abs_diff=verdict.max_abs_diff,
                                        rel_err=verdict.rel_err)
                worst = max(worst, verdict.rel_err or 0.0)
        stopped = "" if steps.complete == self.config.train.steps else " (your loop stopped there)"
        return self._result(case, TRAJECTORY, "passed",
                            f"followed autograd for {steps.complete} SGD steps{stopped}", rel_err=worst)

    def score(self, run, nb_name: str):
        per_case = [self.case_results(case, run) for case in self.cases]
        checks = [self.base.check(c, [pc[c] for pc in per_case]) for c in self.ex.checks]
        failed = [c for c in checks if c.status != "passed"]
        statuses = {r.status for pc in per_case for name, r in pc.items() if name != TRAJECTORY}
        if not failed:
            status, message = "passed", f"all {len(checks)} checks passed"
        elif statuses == {"not_implemented"}:
            status = "failed"
            message = (f"not attempted: the gradients in cell {self.plan.cell} are still None"
                       + (f" and {self._update_message()}" if self.plan.update == "autograd" else ""))
        else:
            status = "failed" if all(c.status == "failed" for c in checks) else "partial"
            first = next((c for c in failed if c.name != TRAJECTORY), failed[0])
            message = (f"{len(failed)} of {len(checks)} checks failed: the SGD trajectory" if first.name == TRAJECTORY
                       else f"{len(failed)} of {len(checks)} checks failed; first to fix: d{first.name}")
        if run is not None and run.error and not run.results:
            status = run.error["status"] if run.error["status"] in ("timeout", "crashed") else "error"
            message = f"exercise 4's loop: {run.error['message']}"
        result = self.base._result(status, message, checks, run)
        result.file = nb_name
        cells = self.plan.cells
        result.function = f"cell {cells[0]}" if len(cells) == 1 else f"cells {', '.join(map(str, cells))}"
        return result


def findings(plan: TrainPlan | None) -> list:
    """Integrity findings: gradients the loop reads from autograd (`dembcat = embcat.grad`), which are not run."""
    from grader.report import IntegrityFinding

    if plan is None:
        return []
    lines = plan.source.splitlines()
    return [IntegrityFinding(exercise="train", file=f"cell {s.cell}", line=s.line, pattern=".grad",
                             message=f"exercise 4 reads autograd's gradient ({lines[s.line - 1].strip()[:80]})")
            for s in plan.skips if s.reason.startswith("reads autograd") and any(n.startswith("d") for n in s.names)]


def score(plan: TrainPlan | None, config, cases, run, nb_name: str):
    """The `train` ExerciseResult of a lecture notebook."""
    from grader.scoring.score import score_exercise

    if plan is None:
        result = score_exercise("train", config, cases, None)
        message = ("exercise 4 is not in the notebook (no training loop that updates the parameters "
                   "with p.data += -lr * grad)")
        result.message, result.file, result.function = message, nb_name, "-"
        for check in result.checks:
            check.message = message
        return result
    return TrainScorer(plan, config, cases).score(run, nb_name)
