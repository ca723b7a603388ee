"""Finding the lecture's exercises by what their code computes, and reading the student's names.

Headers are only hints (misspelled, missing, custom titles), so `grader.submission.lecture` also asks
each code cell what it computes:

- exercise 1: it assigns some of the contract's `d...` gradients (`dlogprobs` ... `dC`);
- exercise 2: it computes `dlogits` in one go, from `logits` and no other gradient;
- exercise 3: it computes `dhprebn` in one go, from `dhpreact` and no other gradient of exercise 1;
- exercise 4: a training loop that updates the parameters (left to the `train` grading).

The student's own `cmp('label', dX, X)` lines say which variable is which gradient, and which
of their forward names is which of the lecture's (`cmp('hpreact', dh_pre_act, h_pre_act)`).

Imports only the standard library: the worker uses it too.
"""

import ast
import difflib
import re
from dataclasses import dataclass

from grader.course.mlp import ATOMIC, FORWARD_ARGS

D_ATOMIC = {"d" + name for name in ATOMIC}
BN_LOCAL = {"dhprebn", "dbnraw", "dbnvar_inv", "dbnvar", "dbndiff", "dbndiff2", "dbnmeani", "dbngain", "dbnbias"}
ONE_GO = {"dlogits": 2, "dhprebn": 3}
LECTURE_NAMES = set(FORWARD_ARGS) | {"loss"}
TRAIN_NAMES = {"max_steps", "lossi", "stepi", "optimizer", "lr", "learning_rate"}
# Suffixes students add to an answer's name for exercises 2 and 3 (dlogits_fast, dhprebn_fast).
SUFFIX = re.compile(r"^(d[A-Za-z0-9]+?)(?:_?(?:fast|manual|quick|onego|one_go|1go|simple|simplified|ex\d|v\d|\d))$")


ASSIGNMENT = re.compile(r"^\s*(d\w+)\s*(?:\[[^\]\n]*\])?\s*(?:[-+*/@]|\*\*)?=(?!=)", re.MULTILINE)


def _function_free(body: list) -> list:
    from grader.submission.lecture import units

    return [node for node in units(body) if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                     ast.ClassDef))]


def canonical(name: str) -> str:
    """`dlogits_fast` -> `dlogits`: the answer a suffixed name stands for (itself otherwise)."""
    match = SUFFIX.match(name)
    if match and match.group(1) in D_ATOMIC:
        return match.group(1)
    return name


def _loads(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _is_training_loop(node) -> bool:
    """A loop that updates parameters (`p.data += -lr * grad`, `p -= lr * ...`) over many steps."""
    if not isinstance(node, (ast.For, ast.While)):
        return False
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    attrs = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    updates = any(isinstance(sub, ast.AugAssign) and isinstance(sub.target, ast.Attribute) and sub.target.attr == "data"
                  for sub in ast.walk(node)) or ("data" in attrs and "lr" in names)
    many = bool(names & TRAIN_NAMES) or any(
        isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "range"
        and any(isinstance(a, ast.Constant) and isinstance(a.value, int) and a.value >= 1000 for a in sub.args)
        for sub in ast.walk(node))
    return updates and (many or "backward" in attrs or "randint" in attrs)


def cell_role(cell) -> int | None:
    """Which exercise a code cell's statements compute (1 to 4), or None."""
    from grader.submission.lecture import assigned_names

    if cell.kind != "code":
        return None
    if cell.tree is None:  # does not parse: judged by the gradients its lines assign, so its errors are reported
        answers = {canonical(m.group(1)) for m in ASSIGNMENT.finditer(cell.source or cell.raw)} & D_ATOMIC
        if answers == {"dlogits"}:
            return 2
        if "dhprebn" in answers and answers <= BN_LOCAL:
            return 3
        return 1 if answers else None
    from grader.submission.lecture_train import _training_loop  # exercise 4's own finder: `p -= lr * grad` too

    nodes = _function_free(cell.tree.body)
    if any(_is_training_loop(node) or _training_loop(node) is not None for node in nodes):
        return 4
    assigned: set[str] = set()
    free_d: set[str] = set()     # gradients read before the cell assigns them
    for node in nodes:
        free_d |= {name for name in (_loads(node) - assigned) if canonical(name) in D_ATOMIC}
        assigned |= {canonical(name) for name in assigned_names(node)}
    answers = assigned & D_ATOMIC
    if answers == {"dlogits"} and not free_d - {"dlogits"}:
        return 2
    if ("dhprebn" in answers and answers <= BN_LOCAL and "dhpreact" not in assigned
            and {canonical(n) for n in free_d} <= {"dhpreact"}):
        return 3
    return 1 if answers else None


# Each one-go exercise's own gradients: what its cells may assign on the way to their answer.
OWN = {2: {"dlogits"}, 3: BN_LOCAL | {"dhpreact"}}


def revisits_exercise_1(cell, header: int) -> list[str]:
    """Exercise 1's gradients a cell under exercise 2's or 3's header assigns when it assigns none of that
    exercise's own and checks one of them with its own cmp line (`dC` fixed after exercise 3): the
    student went back to exercise 1, and their kernel's last value of those gradients is this cell's.
    Empty otherwise."""
    from grader.submission.lecture import assigned_names

    if header not in OWN or cell.kind != "code" or cell.tree is None:
        return []
    answers = {canonical(name) for node in _function_free(cell.tree.body) for name in assigned_names(node)} & D_ATOMIC
    if not answers or answers & OWN[header]:
        return []
    # Only a fix the student checked there: scratch work while deriving the one-go formula has no cmp of its own.
    checked = {call.answer for call in cmp_calls(cell) if not call.commented}
    return sorted(answers) if checked & answers else []


# ---------------------------------------------------------------------------
# The student's names

@dataclass
class CmpCall:
    cell: int
    line: int
    label: str          # the first argument, if a string
    answer: str         # the second argument: the student's gradient variable
    tensor: str         # the third argument: the student's forward tensor
    commented: bool     # from a commented-out line (`# cmp(...)`)

    @property
    def gradient(self) -> str | None:
        """The lecture tensor this call compares: by its tensor if that is a lecture name, else by its label."""
        for name in (self.tensor, self.label.strip(), forward_name(self.tensor), forward_name(self.label.strip())):
            if name in LECTURE_NAMES:
                return name
        return None


COMMENTED_CMP = re.compile(r"^\s*#+\s*((?:print\()?\s*cmp\(.*)$")


def _cmp_of(node) -> ast.Call | None:
    if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Call):
        return None
    call = node.value
    if isinstance(call.func, ast.Name) and call.func.id == "print" and call.args and isinstance(call.args[0], ast.Call):
        call = call.args[0]
    if isinstance(call.func, ast.Name) and call.func.id == "cmp" and len(call.args) >= 3:
        return call
    return None


def _call(node, cell: int, line: int, commented: bool) -> CmpCall | None:
    call = _cmp_of(node)
    if call is None:
        return None
    label, answer, tensor = call.args[:3]
    if not (isinstance(answer, ast.Name) and isinstance(tensor, ast.Name)):
        return None
    text = label.value if isinstance(label, ast.Constant) and isinstance(label.value, str) else ""
    return CmpCall(cell, line, text, answer.id, tensor.id, commented)


def cmp_calls(cell) -> list[CmpCall]:
    """The cell's `cmp(label, dX, X)` calls, commented-out ones too (the starter leaves them so)."""
    if cell.kind != "code":
        return []
    out = []
    if cell.tree is not None:
        for node in ast.walk(cell.tree):
            if isinstance(node, ast.Expr) and (found := _call(node, cell.number, node.lineno, False)):
                out.append(found)
    for i, line in enumerate(cell.source.splitlines(), start=1):
        match = COMMENTED_CMP.match(line)
        if match:
            try:
                body = ast.parse(match.group(1).strip()).body
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            if body and (found := _call(body[0], cell.number, i, True)):
                out.append(found)
    return out


def _normal(name: str) -> str:
    s = name.lower().replace("_", "")
    for old, new in (("batchnorm", "bn"), ("preactivation", "preact"), ("embeddings", "emb"), ("embedding", "emb"),
                     ("embedded", "emb"), ("embed", "emb"), ("concatenated", "cat"), ("concat", "cat"),
                     ("variance", "var"), ("inverse", "inv"), ("normalized", "norm"), ("mean", "meani")):
        s = s.replace(old, new)
    return s.replace("meanii", "meani")


_NORMAL = {_normal(name): name for name in LECTURE_NAMES}
_NORMAL.update({"ybatch": "Yb", "batchy": "Yb", "yb": "Yb", "xbatch": "Xb", "batchx": "Xb", "xb": "Xb",
                "xbemb": "emb", "embcat": "embcat", "embview": "embcat", "embflat": "embcat",
                "hpre": "hprebn", "hprebn": "hprebn", "hpreactbn": "hprebn", "bnhpre": "hprebn",
                "hnorm": "bnraw", "bnnorm": "bnraw", "bnmeani": "bnmeani", "bnvarinv": "bnvar_inv",
                "bnstdinv": "bnvar_inv"})


def forward_name(name: str) -> str | None:
    """The lecture's forward tensor a student's renamed one stands for (`Y_batch` -> `Yb`, `w1` -> `W1`)."""
    if name in LECTURE_NAMES:
        return name
    return _NORMAL.get(_normal(name))


def answer_candidates(name: str, defined, answers) -> list[str]:
    """Variables that look like the answer `name` under another spelling: dlogits_fast, dbhprebn, dlogits_maxes.

    `defined` are the d... variables the cells defined, `answers` all the exercise's answer names."""
    pool = [d for d in defined if d not in answers and d != name]
    hits = [d for d in pool if canonical(d) == name]
    lowered = {d.lower(): d for d in pool}
    hits += [lowered[h] for h in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.8)
             if lowered[h] not in hits]
    return hits
