"""Which statements of a lecture notebook the grader runs, and which answers come from autograd.

One policy for the whole notebook. Exercises 1 to 3 and exercise 4's loop differ on purpose,
and the difference is data (`Rules`): exercise 4 trains on the grader's `Xtr`, `Ytr`, so reading
them is its work, while in exercises 1 to 3 it is data loading; exercise 4 also leaves out every
other road to autograd (`torch.autograd`, `grad_fn`), where exercises 1 to 3 run such a
statement so that the static check (`grader.submission.integrity.scan`) reports it.

Imports only the standard library: the planner runs on every notebook.
"""

import ast
from dataclasses import dataclass, field

from grader.course.mlp import PARAMS
from grader.sandbox.inside.statements import assigned_names, attrs, loads, names

PLOT_NAMES = frozenset({"plt", "matplotlib", "sns", "seaborn", "plotly", "px"})
SKIP_IMPORTS = ("matplotlib", "seaborn", "plotly", "IPython", "google", "google.colab", "tqdm", "wandb")
LOADERS = frozenset({"open", "words", "build_dataset", "urllib", "requests", "wget", "subprocess"})
SPLITS = frozenset({"Xtr", "Ytr", "Xdev", "Ydev", "Xte", "Yte", "Xval", "Yval"})
PLUMBING = frozenset({"grad", "backward", "retain_grad", "retains_grad", "requires_grad", "requires_grad_",
                      "zero_grad"})
TRAIN_NAMES = {"max_steps", "lossi", "stepi", "optimizer", "split_loss"}
# An exercise cell that also initialises the network (or draws a batch) would grade the student's own
# random parameters against the grader's answers: the grader's parameters and batch stand.
REINIT = {*PARAMS, "Xb", "Yb"}


@dataclass(frozen=True)
class Rules:
    """What the grader leaves out of one part of the notebook."""

    autograd: frozenset[str]    # attributes of autograd's plumbing (`.grad` here means writing it)
    autograd_reason: str
    plot_attrs: frozenset[str]
    data: frozenset[str]        # names whose use is data loading
    given: frozenset[str]       # the data the grader provides: assigning it is data loading


EXERCISES_1_TO_3 = Rules(
    autograd=PLUMBING, autograd_reason="autograd (.backward, .retain_grad, requires_grad)",
    plot_attrs=frozenset({"imshow", "plot", "hist", "figure"}), data=LOADERS | SPLITS, given=frozenset())
EXERCISE_4 = Rules(
    autograd=PLUMBING | {"autograd", "grad_fn"}, autograd_reason="autograd (.backward, .grad, requires_grad)",
    plot_attrs=frozenset({"imshow", "plot", "hist", "figure", "show"}), data=LOADERS, given=SPLITS)


def reads_grad(node) -> bool:
    return any(isinstance(sub, ast.Attribute) and sub.attr == "grad" and isinstance(sub.ctx, ast.Load)
               for sub in ast.walk(node))


def uses_autograd(node, rules: Rules = EXERCISES_1_TO_3) -> bool:
    """`.backward()`, `.retain_grad()`, `requires_grad`, `p.grad = None`: the lecture's plumbing."""
    return bool(attrs(node) & rules.autograd)


def autograd_reason(node, rules: Rules) -> str | None:
    if reads_grad(node):
        return "reads autograd's gradient (.grad)"
    if uses_autograd(node, rules):
        return rules.autograd_reason
    return None


def tooling_reason(node, rules: Rules) -> str | None:
    """Plotting, notebook tooling and data loading: never run. Imports of anything else run."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if any(m == s or m.startswith(s + ".") for m in modules for s in SKIP_IMPORTS):
            return "plotting or notebook tooling"
        return None
    used, used_attrs = names(node), attrs(node)
    strings = [s.value for s in ast.walk(node) if isinstance(s, ast.Constant) and isinstance(s.value, str)]
    if used & PLOT_NAMES or used_attrs & rules.plot_attrs:
        return "plotting"
    if used & rules.data or any("names.txt" in s or "://" in s for s in strings):
        return "data loading"
    return None


def top_level_targets(node) -> set[str]:
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    found = set()
    for t in targets:
        found |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return found


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


def _is_check_call(node, checkers) -> bool:
    """A call of the student's own cmp-like helper (a function that reads .grad), alone on its line."""
    call = node.value if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) else None
    if call is not None and isinstance(call.func, ast.Name) and call.func.id == "print" and call.args:
        call = call.args[0] if isinstance(call.args[0], ast.Call) else None
    return call is not None and isinstance(call.func, ast.Name) and call.func.id in checkers


def skip_reason(node, checkers=()) -> str | None:
    """Why a statement of exercise 1's, 2's or 3's section is not run, or None to run it.

    `checkers`: names of the student's own cmp-like helpers (they compare with .grad)."""
    rules = EXERCISES_1_TO_3
    reason = autograd_reason(node, rules)
    if reason is not None:
        return reason
    if any(name.startswith("d") for name in top_level_targets(node)):
        return None  # computes a gradient: always run
    if _is_cmp_call(node) or _is_check_call(node, checkers):
        return "a cmp check (the grader compares itself)"
    reason = tooling_reason(node, rules)
    if reason is not None or isinstance(node, (ast.Import, ast.ImportFrom)):
        return reason
    if top_level_targets(node) & REINIT:
        return "re-initialises the parameters or the batch (the grader's are used)"
    if _has_loop(node) and (names(node) & TRAIN_NAMES or attrs(node) & {"backward", "step", "zero_grad"}
                            or _big_range(node)
                            or any(isinstance(s, ast.While) and isinstance(s.test, ast.Constant) and s.test.value
                                   for s in ast.walk(node))):
        return "a training or sampling loop"
    return None


def is_prelude(node) -> bool:
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


# ---------------------------------------------------------------------------
# The autograd taint: which answers a `.grad` read reaches

@dataclass
class AutogradUse:
    """A `.grad` read whose value reaches some of the exercise's answers."""

    cell: int
    line: int
    text: str                                       # e.g. `hpreact.grad`
    names: list[str] = field(default_factory=list)  # answers (d...) it reaches
    direct: list[str] = field(default_factory=list)  # answers assigned from it directly


def _grad_reads(node, source: str) -> list[tuple[int, str]]:
    return [(sub.lineno, ast.get_source_segment(source, sub) or ".grad") for sub in ast.walk(node)
            if isinstance(sub, ast.Attribute) and sub.attr == "grad" and isinstance(sub.ctx, ast.Load)]


def autograd_uses(statements, expected, provided=()) -> list[AutogradUse]:
    """The `.grad` reads whose values flow into the answers `expected` (d... names), in statement order.

    `dhpreact = hpreact.grad` in exercise 1 makes dhpreact (and what is computed from it) autograd's;
    in exercise 3, where the grader supplies the true dhpreact (`provided`), the same line is harmless.
    A `.grad` that is only printed or compared reaches no answer and is not a use.
    `statements`: (cell, node, source) in the order they run.
    """
    provided = set(provided)
    tainted: dict[str, tuple[AutogradUse, bool]] = {}   # name -> (its source, assigned directly)
    for cell, node, source in statements:
        bound = assigned_names(node) - provided
        reads = _grad_reads(node, source)
        if reads:
            use = AutogradUse(cell, reads[0][0], reads[0][1])
            for name in bound:
                tainted[name] = (use, True)
            continue
        source_use = next((tainted[n][0] for n in sorted(loads(node)) if n in tainted), None)
        for name in bound:
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
