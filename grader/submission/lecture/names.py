"""The student's names: which variable is which answer, which of their tensors is which of the lecture's.

The student's own `cmp('label', dX, X)` lines say which variable is which gradient, and which
of their forward names is which of the lecture's (`cmp('hpreact', dh_pre_act, h_pre_act)`);
names the cells read but nothing defines are read by their spelling (`Y_batch` -> `Yb`), or
from the student's own forward cell, which the worker runs on the grader's batch.

Imports only the standard library: the planner runs on every notebook.
"""

import ast
import builtins
import re
from dataclasses import dataclass

from grader.course.mlp import FORWARD_ARGS
from grader.sandbox.inside.statements import assigned_names, loads, units
from grader.submission.lecture.policy import skip_reason

LECTURE_NAMES = set(FORWARD_ARGS) | {"loss"}

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



KNOWN_GLOBALS = {"torch", "F", "cmp", "n", "batch_size", "vocab_size", "block_size", "n_embd", "n_hidden", "g",
                 "itos", "stoi", "chars", "parameters", "loss"}


def bound_names(node) -> set[str]:
    """The names a statement binds: assigned, imported, defined, and its functions' arguments."""
    names = assigned_names(node)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
    read = set()
    for sub in ast.walk(node):  # function arguments; the names read, kept for name_maps
        if isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
            read.add(sub.id)
    node._grader_loads = read
    return names


def name_maps(plan, cells) -> None:
    """The student's names for each section: answers by their cmp lines, renamed forward tensors.

    `aliases`: lecture gradient -> the student's variables their cmp lines compare with it
    (`cmp('logit_maxes', dlogits_maxes, logit_maxes)`); `forward_aliases`: a name the cells read but
    nothing defines -> the lecture tensor it stands for (`Y_batch` -> `Yb`), from the cmp lines or
    the name itself.
    """
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
            if grad in sec.expected and call.answer != "d" + grad:
                sec.aliases.setdefault(grad, [])
                if call.answer not in sec.aliases[grad]:
                    sec.aliases[grad].append(call.answer)
            if grad is not None and call.tensor not in LECTURE_NAMES:
                sec.forward_aliases.setdefault(call.tensor, grad)
        bound = set(prelude_names) | KNOWN_GLOBALS | LECTURE_NAMES | set(sec.provided)
        loads = set()
        for _, node, _ in sec.statements:
            bound |= bound_names(node)
            loads |= getattr(node, "_grader_loads", set())
        for name in sorted(loads - bound - builtin_names):
            lecture = forward_name(name)
            if lecture is not None and not name.startswith("d"):
                sec.forward_aliases.setdefault(name, lecture)
        unknown = sorted(n for n in loads - bound - builtin_names - set(sec.forward_aliases) if not n.startswith("d"))
        if unknown:
            sec.forward_cell = _forward_cell(plan, cells, sec, set(unknown))
        for student, lecture in sorted(sec.forward_aliases.items()):  # dh_pre_act for h_pre_act's gradient
            if lecture in sec.expected and "d" + student not in sec.aliases.get(lecture, []):
                sec.aliases.setdefault(lecture, []).append("d" + student)
        if sec.forward_aliases:
            shown = ", ".join(f"{k} as {v}" for k, v in sorted(sec.forward_aliases.items())[:8])
            plan.notes.append(f"exercise {sec.number}: your names for the forward pass were read as the lecture's: "
                              f"{shown}")


def _forward_cell(plan, cells, sec, unknown: set[str]) -> dict | None:
    """The student's own forward-pass cell that defines names the exercise reads but nothing gives it.

    The worker runs it on the grader's parameters and batch (its inputs read as the lecture's by their
    names) and takes each of those names for the lecture tensor it equals."""
    in_sections = {n for other in plan.sections.values() for n in other.cell_numbers}
    first = min(sec.cell_numbers, default=0)
    for cell in reversed([c for c in cells if c.kind == "code" and c.tree is not None and c.number < first
                          and c.number not in in_sections and c.number not in plan.training_cells]):
        nodes = [node for node in units(cell.tree.body) if skip_reason(node) is None]
        assigned: set[str] = set()
        inputs: dict[str, str] = {}
        for node in nodes:
            for name in sorted(loads(node) - assigned - set(dir(builtins)) - KNOWN_GLOBALS - LECTURE_NAMES):
                lecture = forward_name(name)
                if lecture is not None:
                    inputs.setdefault(name, lecture)
            assigned |= assigned_names(node)
        wanted = sorted(unknown & assigned)
        if wanted:
            return {"cell": cell.number, "source": cell.source, "inputs": inputs, "wanted": wanted,
                    "run": [[node.lineno, node.col_offset] for node in nodes]}
    return None

