"""Single-edit mistakes of backward-pass code, made with `ast`.

One edit to one statement: an operator swapped (`/` for `*`, `+` for `-`,
`+=` for `-=`), a unary minus dropped, a constant changed, a reduction's dim
flipped (0 <-> 1), `keepdim` flipped, a `.T` dropped, a term or factor
dropped (or a whole `+=` branch), a variable swapped for another one of the
same statement or a neighbour of the forward pass.

Two users: the mutation harness (tests and benchmarks/hint_coverage.py)
grades the single-edit mistakes of the reference solutions, and the
diagnosis (grader.feedback.nearmiss) searches the single edits of a local rule for
the one that reproduces a student's answer, or that repairs a line that
raised. Grader code only: it never runs student code.
"""

import ast
import copy
from collections.abc import Iterator
from dataclasses import dataclass

BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult}
SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@"}
REDUCTIONS = {"sum", "mean", "max", "softmax", "log_softmax", "argmax", "amax"}
# the forward pass in order: a variable is swapped for its neighbours too (h for hpreact, ...)
FORWARD_ORDER = (
    "C", "emb", "embcat", "W1", "b1", "hprebn", "bnmeani", "bndiff", "bndiff2", "bnvar", "bnvar_inv",
    "bnraw", "bngain", "bnbias", "hpreact", "h", "W2", "b2", "logits", "logit_maxes", "norm_logits",
    "counts", "counts_sum", "counts_sum_inv", "probs", "logprobs",
)


@dataclass(frozen=True)
class Edit:
    kind: str      # binop, augop, sign, constant, dim, keepdim, drop_T, drop_term, drop_branch, swap_var
    what: str      # for a person: "`*` for `/`", "dim 0 for 1", ...
    before: str    # the statement as written
    after: str     # the statement after the edit ("" for a dropped statement)


def _children(node: ast.AST):
    """(parent, field, index or None, child) for the expression children of `node`, in a fixed order."""
    for field, value in ast.iter_fields(node):
        if isinstance(value, ast.AST):
            yield node, field, None, value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ast.AST):
                    yield node, field, i, item


def _slots(root: ast.AST) -> list[tuple]:
    out, stack = [], [root]
    while stack:
        node = stack.pop(0)
        for slot in _children(node):
            out.append(slot)
            stack.append(slot[3])
    return out


def _replace(root: ast.stmt, index: int, new) -> ast.stmt:
    """A copy of `root` with the child at slot `index` replaced by `new(child_copy)`."""
    root = copy.deepcopy(root)
    parent, field, i, child = _slots(root)[index]
    value = new(child)
    if i is None:
        setattr(parent, field, value)
    else:
        getattr(parent, field)[i] = value
    return ast.fix_missing_locations(root)


def _is_dim_arg(parent: ast.AST, field: str, i, node: ast.AST) -> bool:
    if not isinstance(parent, ast.Call):
        return isinstance(parent, ast.keyword) and parent.arg == "dim"
    func = parent.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in REDUCTIONS or field != "args":
        return False
    # x.sum(1): the first argument; F.softmax(x, 1): the second
    return i == (0 if isinstance(func, ast.Attribute) and not _is_module(func.value) else 1)


def _is_module(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("torch", "F")


def _number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _names(stmt: ast.stmt) -> list[str]:
    seen = []
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in ("torch", "F", "range"):
            if node.id not in seen:
                seen.append(node.id)
    return seen


def _swaps(name: str, stmt_names: list[str], known: set[str] | None) -> list[str]:
    out = [m for m in stmt_names if m != name]
    for order in (FORWARD_ORDER, tuple("d" + k for k in FORWARD_ORDER)):
        if name in order:
            i = order.index(name)
            out += [m for m in order[max(0, i - 1):i + 2] if m != name and m not in out]
    return [m for m in out if known is None or m in known]


def statement_edits(stmt: ast.stmt, known: set[str] | None = None) -> Iterator[tuple[Edit, ast.stmt | None]]:
    """Every single edit of one statement: (the edit, the edited statement or None if dropped).

    `known`: the names a swapped-in variable may take (None: any of the statement's and
    the forward neighbours).
    """
    before = ast.unparse(stmt)

    def made(kind, what, new):
        return Edit(kind, what, before, ast.unparse(new) if new is not None else ""), new

    if isinstance(stmt, ast.AugAssign):
        swap = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}.get(type(stmt.op))
        if swap:
            new = copy.deepcopy(stmt)
            new.op = swap()
            yield made("augop", f"`{SYMBOL[swap]}=` where the rule has `{SYMBOL[type(stmt.op)]}=`", new)
        if isinstance(stmt.op, (ast.Add, ast.Sub)):
            yield made("drop_branch", "the whole line dropped", None)
    stmt_names = _names(stmt)
    for index, (parent, field, i, node) in enumerate(_slots(stmt)):
        if isinstance(node, ast.BinOp):
            swap = BINOP_SWAPS.get(type(node.op))
            if swap:
                def op(n, swap=swap):
                    n.op = swap()
                    return n
                yield made("binop", f"`{SYMBOL[swap]}` where the rule has `{SYMBOL[type(node.op)]}`",
                           _replace(stmt, index, op))
            if isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
                yield made("drop_term", f"`{ast.unparse(node.right)}` left out",
                           _replace(stmt, index, lambda n: n.left))
                if not isinstance(node.op, ast.Div):
                    yield made("drop_term", f"`{ast.unparse(node.left)}` left out",
                               _replace(stmt, index, lambda n: n.right))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            yield made("sign", "the minus sign left out", _replace(stmt, index, lambda n: n.operand))
        elif isinstance(node, ast.Attribute) and node.attr == "T":
            yield made("drop_T", f"`{ast.unparse(node.value)}` where the rule has `{ast.unparse(node)}`",
                       _replace(stmt, index, lambda n: n.value))
        elif isinstance(node, ast.keyword) and node.arg == "keepdim" and isinstance(node.value, ast.Constant):
            def flip(n):
                n.value = ast.Constant(not n.value.value)
                return n
            yield made("keepdim", f"keepdim={not node.value.value} where the rule has keepdim={node.value.value}",
                       _replace(stmt, index, flip))
        elif _number(node) and _is_dim_arg(parent, field, i, node):
            if node.value in (0, 1):
                yield made("dim", f"dim {1 - node.value} where the rule has dim {node.value}",
                           _replace(stmt, index, lambda n: ast.Constant(1 - n.value)))
        elif _number(node) and not isinstance(parent, ast.keyword) and not isinstance(node.value, bool):
            c = node.value
            for new in (c + 1, c - 1 if c >= 1 else None, 0 if c not in (0, 1) else None):
                if new is not None and new != c:
                    yield made("constant", f"{new!r} where the rule has {c!r}",
                               _replace(stmt, index, lambda n, new=new: ast.Constant(type(c)(new))))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in stmt_names:
            for other in _swaps(node.id, stmt_names, known):
                yield made("swap_var", f"`{other}` where the rule has `{node.id}`",
                           _replace(stmt, index, lambda n, other=other: ast.Name(other, ast.Load())))


@dataclass(frozen=True)
class Mutant:
    """A module with one single-edit mistake in one function."""

    edit: Edit
    line: int              # the edited statement's first line in the original source
    target: str | None     # the variable that statement assigns (e.g. `dh`), if any
    source: str            # the whole mutated module


def target_of(stmt: ast.stmt) -> str | None:
    node = stmt.targets[0] if isinstance(stmt, ast.Assign) else getattr(stmt, "target", None)
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def mutants(source: str, function: str) -> list[Mutant]:
    """Every single-edit mutant of the statements of `function` in `source` (its docstring and return kept)."""
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    out = []
    for pos, stmt in enumerate(fn.body):
        if isinstance(stmt, ast.Return) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            continue
        for edit, new in statement_edits(stmt):
            edited = copy.copy(fn)  # shallow: only the body list differs
            edited.body = fn.body[:pos] + [new if new is not None else ast.Pass()] + fn.body[pos + 1:]
            module = copy.copy(tree)
            module.body = [edited if node is fn else node for node in tree.body]
            out.append(Mutant(edit, stmt.lineno, target_of(stmt), ast.unparse(ast.fix_missing_locations(module))))
    return out
