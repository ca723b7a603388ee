"""Near misses: the one slip in a local rule that gives the student's answer, or repairs a line that raised.

Runs in the grading process on grader data only: the worked code of each
step (grader.course.steps.RULES, or the exercise's own worked code) is edited once at a time with grader.feedback.mutants (an
operator, a sign, a constant, a dim, keepdim, a .T, a term, a variable) and
run on the case's tensors, with the student's own upstream gradients in
exercise 1. A slip is named only when its result matches the student's
answer on the grader's tolerance and the right rule's result does not: the
cause is confirmed, never guessed. For a line that raised, the statement
from the traceback is parsed (never run as the student's code: only its
sub-expressions, on the grader's tensors, to find the operation that fails
and its shapes), and a fix is offered only when the line is one edit away
from the rule. The line is evaluated only when it is identical to the
grader's own rule or one of its single edits: the worker's text is never
run as code.
"""

import ast
import builtins
import functools
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from grader.course.steps import RULES
from grader.feedback.mutants import Edit, statement_edits, target_of

_BUILTINS = builtins  # (torch's indexing imports on first use: it needs the real __import__)
_FRAME = re.compile(r'^  File "(?P<file>.+?)", line (?P<line>\d+), in (?P<fn>.+)\n    (?P<code>.*)$', re.M)


@dataclass
class Slip:
    edit: Edit
    at: str                     # the gradient (without the d) whose line has the slip
    values: dict                # the namespace after the edited code ran


def _statements(code: str) -> tuple[ast.stmt, ...]:
    return tuple(ast.parse(code).body)


@functools.cache
def _compiled(code: str):
    return [compile(ast.Module([s], []), "<rule>", "exec") for s in _statements(code)]


@functools.cache
def _edits(code: str, index: int, known: frozenset) -> list[tuple[Edit, object, frozenset]]:
    out = []
    for edit, new in statement_edits(_statements(code)[index], set(known)):
        if new is None:
            out.append((edit, None, frozenset()))
            continue
        names = frozenset(n.id for n in ast.walk(new) if isinstance(n, ast.Name))
        out.append((edit, compile(ast.Module([new], []), "<slip>", "exec"), names))
    return out


@functools.cache
def _names_after(code: str, index: int) -> frozenset:
    return frozenset(n.id for s in _statements(code)[index:] for n in ast.walk(s) if isinstance(n, ast.Name))


def _globals(values: dict) -> dict:
    return {"torch": torch, "F": F, "__builtins__": _BUILTINS, **values}


def _fresh(ns: dict, names) -> dict:
    """A copy of `ns` whose tensors named in `names` are cloned (the code may change them in place)."""
    ns = dict(ns)
    for name in names:
        if isinstance(ns.get(name), torch.Tensor):
            ns[name] = ns[name].clone()
    return ns


def run(code: str, values: dict) -> dict:
    ns = _fresh(_globals(values), _names_after(code, 0))
    for c in _compiled(code):
        exec(c, ns)  # noqa: S102 - the grader's own rule code on the grader's tensors
    return ns


def _writes(stmt: ast.stmt) -> str | None:
    """The variable a statement sets or changes in place (`dC.index_add_(...)` changes dC)."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Attribute):
        owner = stmt.value.func.value
        return owner.id if isinstance(owner, ast.Name) else None
    return target_of(stmt)


@functools.cache
def _influence(code: str) -> tuple[frozenset, ...]:
    """For each statement, the variables a slip in it can change (its own and every later one reading them)."""
    stmts = _statements(code)
    out = []
    for i, stmt in enumerate(stmts):
        changed = {_writes(stmt)}
        for later in stmts[i + 1:]:
            if changed & {n.id for n in ast.walk(later) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}:
                changed.add(_writes(later))
        out.append(frozenset(changed - {None}))
    return tuple(out)


def slips(code: str, values: dict, wrong: set[str] | None = None, right: set[str] | None = None):
    """Every single slip of `code` that runs: `Slip`s, in the order of the code's statements.

    With `wrong` and `right` (variable names), only slips in statements that can change every
    name of `wrong` and none of `right`.
    """
    compiled = _compiled(code)
    stmts = _statements(code)
    known = frozenset(k for k, v in values.items() if isinstance(v, (torch.Tensor, int))) | {
        t for s in stmts if (t := _writes(s))}
    ns = _globals(values)
    ns = _fresh(ns, _names_after(code, 0))
    for i, stmt in enumerate(stmts):
        target = _writes(stmt) or ""
        changes = _influence(code)[i]
        if (wrong is not None and not wrong <= changes) or (right is not None and right & changes):
            if not _ran(compiled[i], ns):
                return
            continue
        rest = compiled[i + 1:]
        later = _names_after(code, i + 1) if rest else frozenset()
        for edit, c, names in _edits(code, i, known):
            trial = _fresh(ns, names | later)
            try:
                if c is not None:
                    exec(c, trial)  # noqa: S102
                for r in rest:
                    exec(r, trial)  # noqa: S102
            except Exception:  # noqa: BLE001 - a slip that does not run cannot be the student's
                continue
            yield Slip(edit, target.removeprefix("d"), trial)
        if not _ran(compiled[i], ns):
            return  # the rule itself does not fit this case: nothing more to try


def _ran(code, ns: dict) -> bool:
    try:
        exec(code, ns)  # noqa: S102 - the grader's own rule code on the grader's tensors
    except Exception:  # noqa: BLE001
        return False
    return True


def step_slips(check: str, values: dict):
    """Slips of exercise 1's step for d`check`, on `values` (forward tensors, gradients as dX, ints)."""
    return slips(RULES[check][2], values)


def one_go_values(inputs: dict, ints: dict, args: tuple[str, ...]) -> dict:
    """What an exercise's worked code runs on: its arguments from the case, and the case's ints."""
    values = {k: inputs[k] for k in args}
    values["vocab_size"] = ints.get("vocab_size")
    values["n"] = ints["n"]
    return values


def nudge(slip: Slip, check: str, by_step: bool) -> str:
    """The hint of a slip: in one step's rule (`by_step`, each check a step) or in a one-go formula."""
    where = f"your line for d{slip.at}"
    if slip.edit.kind == "sign":
        return f"d{check} has the wrong sign: {slip.edit.what} in {where}."
    if by_step:
        forward = RULES[slip.at][0] if slip.at in RULES else ""
        return (f"d{check} is what the rule for {forward} gives with one slip: {slip.edit.what}. "
                f"Look at that part of {where}.")
    return (f"d{check} is what the one-go formula gives with one slip in the line for d{slip.at}: "
            f"{slip.edit.what}. Look at that part of {where}.")


# ---------------------------------------------------------------------------
# A line that raised.


@dataclass
class Raised:
    line: int
    code: str                   # the statement as the traceback shows it
    at: str | None              # the gradient it computes (without the d), when it is one
    problem: str | None         # the failing operation and its shapes, e.g. "`dlogits @ W2` does not multiply ..."
    fix: str | None             # a confirmed repair: the statement as it should read
    what: str | None            # the edit between the two, for a person
    upstream: str | None = None  # the line is right: a gradient it reads has the wrong shape


def last_frame(traceback: str) -> tuple[int, str] | None:
    frames = list(_FRAME.finditer(traceback or ""))
    if not frames:
        return None
    return int(frames[-1]["line"]), frames[-1]["code"].strip()


def _shape(t) -> str:
    return str(tuple(t.shape)).replace(",)", ")")


def _failing(node: ast.AST, ns: dict):
    """The innermost sub-expression of `node` that raises on the grader's tensors, with its operands' values."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr):
            found = _failing(child, ns)
            if found is not None:
                return found
    if not isinstance(node, ast.expr) or isinstance(node, (ast.Name, ast.Constant, ast.Starred, ast.Slice)):
        return None
    try:
        eval(compile(ast.Expression(node), "<line>", "eval"), _fresh(ns, ()))  # noqa: S307
    except Exception as err:  # noqa: BLE001
        return node, err
    return None


def _value(node: ast.AST, ns: dict):
    try:
        return eval(compile(ast.Expression(node), "<line>", "eval"), _fresh(ns, ()))  # noqa: S307
    except Exception:  # noqa: BLE001
        return None


def _problem(node: ast.AST, err: Exception, ns: dict) -> str | None:
    text = ast.unparse(node)
    if isinstance(node, ast.BinOp):
        a, b = _value(node.left, ns), _value(node.right, ns)
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            if isinstance(node.op, ast.MatMult):
                return f"`{text}` does not multiply {_shape(a)} by {_shape(b)}"
            return f"`{text}` combines shapes {_shape(a)} and {_shape(b)}, which do not broadcast"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = _value(node.func.value, ns)
        if isinstance(owner, torch.Tensor):
            first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            return f"`{text}` fails on a tensor of shape {_shape(owner)} ({first})"
    return None


@functools.cache
def _reference_edits(code: str) -> dict[str, tuple[str, str, str | None]]:
    """ast.dump of every single edit of every statement of `code` -> (the statement, the edit, its target)."""
    out = {}
    for ref in _statements(code):
        out.setdefault(ast.dump(ref), (ast.unparse(ref), "", _writes(ref)))
        for edit, new in statement_edits(ref):
            if new is not None:
                out.setdefault(ast.dump(new), (ast.unparse(ref), edit.what, _writes(ref)))
    return out


def _shape_variants(t: torch.Tensor):
    """Shapes a slip upstream often gives a gradient: keepdim lost, or transposed."""
    if t.dim() >= 2 and 1 in t.shape:
        yield t.squeeze(), "a sum or a mean without keepdim=True"
    if t.dim() == 2 and t.shape[0] != t.shape[1]:
        yield t.T, "a transposed matrix product"
    if t.dim() == 1:
        yield t[None, :], "a size-1 dimension kept (keepdim=True) where there is none"


_OUTPUT_SHAPE = re.compile(r"output with shape \[([\d, ]*)\] doesn't match the broadcast shape")


def _upstream_shape(stmt: ast.stmt, ns: dict, error: str, truth: dict) -> tuple[str, str | None, str] | None:
    """The gradient read by a right line that must have the wrong shape: (name, its shape if known, why).

    The forward tensors are the grader's, so when the line reads one gradient only, that one is it;
    an in-place `+=` whose output does not fit says the shape of its target; otherwise a gradient
    is named when a typical wrong shape of it reproduces the error exactly.
    """
    compiled = compile(ast.Module([stmt], []), "<line>", "exec")
    reads = [n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
             and n.id.startswith("d") and n.id[1:] in truth]
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        m = _OUTPUT_SHAPE.search(error)
        if m and stmt.target.id.startswith("d") and stmt.target.id[1:] in truth:
            shape = "(" + m.group(1) + ")" if "," in m.group(1) else f"({m.group(1)})"
            return stmt.target.id, shape, "the line that starts it"
        reads.append(stmt.target.id)
    reads = [r for r in dict.fromkeys(reads) if r[1:] in truth]
    if len(reads) == 1:
        return reads[0], None, "the lines before it"
    for name in reads:
        for variant, why in _shape_variants(ns[name]):
            trial = _fresh(ns, {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)})
            trial[name] = variant
            try:
                exec(compiled, trial)  # noqa: S102
            except Exception as err:  # noqa: BLE001
                if f"{type(err).__name__}: {err}".strip() == error:
                    return name, None, f"the line that computes {name} ({why} gives a shape that fails here)"
    return None


def diagnose_raised(traceback: str, references: list[str], values: dict, truth: dict) -> Raised | None:
    """What failed on the line that raised, and its repair, when the line is one edit from the rule.

    The line comes from the worker, so it is never run as such: it is only compared (as an AST) with
    the single edits of the grader's own worked code, and only a line identical to one of those is
    evaluated, on the grader's tensors. `references`: the worked code that may contain the line's
    rule; `values`: the tensors it reads (forward tensors, the true gradients as dX, ints); `truth`:
    gradient name -> its true value.
    """
    frame = last_frame(traceback)
    if frame is None:
        return None
    line, code = frame
    error = traceback.strip().splitlines()[-1].strip()
    try:
        body = ast.parse(code).body
    except Exception:  # noqa: BLE001 - part of a statement (a multi-line one), or anything at all
        return None
    if len(body) != 1:
        return None
    stmt = body[0]
    dump = ast.dump(stmt)
    found_ref = next((e[dump] for block in references if dump in (e := _reference_edits(block))), None)
    if found_ref is None:
        return None
    ref, what, ref_target = found_ref
    ns = _globals(values)
    at = ref_target[1:] if ref_target and ref_target[1:] in truth else None
    if what:  # the line is the rule with one slip: that slip is the mistake
        failing = _failing(stmt, ns)
        return Raised(line, code, at, _problem(*failing, ns) if failing else None, ref, what)
    # the line is right: a gradient it reads must have come in with the wrong shape
    upstream = _upstream_shape(stmt, ns, error, truth)
    if upstream is None:
        return None
    name, shape, why = upstream
    want = _shape(truth[name[1:]])
    has = f"has shape {shape}" if shape else "has another shape"
    return Raised(line, code, name[1:], None, None, None,
                  upstream=f"this line is right, so a gradient it reads has the wrong shape: {name} must have "
                           f"the shape of {name[1:]}, {want}, but {has}. Check {why}")


def raised_message(r: Raised, function: str) -> str | None:
    """The hint for a line that raised, when it says more than the traceback: a confirmed repair."""
    if r.upstream is not None:
        return f"{function} stopped at line {r.line} (`{r.code}`): {r.upstream}."
    if r.fix is None:
        return None
    where = f"line {r.line} (`{r.code}`)" + (f", which computes d{r.at}" if r.at else "")
    problem = f": {r.problem}" if r.problem else ""
    repair = f"did you mean `{r.fix}`?" + (f" (you have {r.what})" if r.what else "")
    return f"{function} stopped at {where}{problem}; {repair}"
