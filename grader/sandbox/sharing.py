"""Which exercises of a submission may run one after another in one child process of the worker.

A child per exercise costs more than most exercises' arithmetic: each one copies, on write, the pages of
the Python heap it touches, and tears them down at exit (about two thirds of a batch's CPU, measured).
The worker (grader.sandbox.inside.session) runs a group in one child only when sharing changes nothing a
grade can see, and the grading process decides which, from what it alone knows:
- the answer key stays out of reach: an input that is autograd's answer (an exercise's `private_inputs`,
  such as batch norm's dhpreact) reaches the child only once every member before it has answered (the
  worker sends it then), and only members its exercise names in `private_inputs_safe_for` (whose answers
  it gives nothing away of, such as embedding after batch norm) may run after it;
- no exercise can change another's result: a submission whose files rebind an attribute (a monkeypatch
  such as `torch.exp = ...`, which the allow list cannot tell from a plain assignment) or name setattr,
  delattr, vars, globals or `__dict__` runs every exercise alone, as does anything but a plain module exercise (the
  lecture notebook's cells).
A crash, a hang or garbage on the pipe still costs only the exercise in progress: the worker kills that
child and runs the rest of the group in a fresh one.
"""

import ast
import hashlib
from collections import OrderedDict
from pathlib import Path

from grader.submission.integrity.driver import source_nodes

MAX_SOURCE = 1 << 20  # bytes of one file read to decide (a larger file: no sharing)


# Verdicts by the source's digest, never the source (a course's files, up to MAX_SOURCE each, would stay).
MAX_REMEMBERED = 4096
_REBINDS: OrderedDict[bytes, bool] = OrderedDict()


def _rebinds_attributes(source: str) -> bool:
    """True if the source assigns or deletes an attribute, or names setattr, delattr, vars, globals or
    __dict__ (or does not parse: then nothing about it is known)."""
    key = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    if (known := _REBINDS.get(key)) is None:
        known = _REBINDS[key] = _finds_rebinding(source)
        if len(_REBINDS) > MAX_REMEMBERED:
            _REBINDS.popitem(last=False)
    return known


def _finds_rebinding(source: str) -> bool:
    found = source_nodes(source)  # parsed once with the integrity scan of the same file
    if found is None:
        return True
    for node in found:
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            return True
        if isinstance(node, ast.Name) and node.id in ("setattr", "delattr", "__dict__", "vars", "globals"):
            return True
        if isinstance(node, ast.Attribute) and node.attr in ("__dict__", "__setattr__", "__delattr__"):
            return True
    return False


def may_share(submission: Path) -> bool:
    """No file of the submission could reach past its own exercise by rebinding something."""
    try:
        files = sorted(submission.rglob("*.py"))
        for file in files:
            if file.is_symlink() or file.stat().st_size > MAX_SOURCE:
                return False
            if _rebinds_attributes(file.read_text(errors="replace")):
                return False
    except OSError:
        return False
    return True


def _safe_before(entry: dict, others: list[dict]) -> bool:
    """Whether every other exercise may run after `entry` in its child (it names them all safe)."""
    return all(o["id"] in entry.get("private_inputs_safe_for", ()) for o in others if o is not entry)


def groups(entries: list[dict], submission: Path) -> list[list[str]]:
    """The exercises' ids in running order, in groups that share a child (a group of one runs alone).

    Plain exercises without private inputs first, in the plan's order, then those with private inputs,
    each followed only by exercises it names safe (`private_inputs_safe_for`; in the plan's order where
    several could come next, and the first of them alone closes the group where none can); every other
    exercise alone, in the plan's order.
    """
    plain = [e for e in entries if not e.get("mode")]
    if len(plain) < 2 or not may_share(submission):
        return [[e["id"]] for e in entries]
    shared = [e["id"] for e in plain if not e.get("private_inputs")]
    rest = [e for e in plain if e.get("private_inputs")]
    while rest:
        nxt = next((e for e in rest if _safe_before(e, rest)), None)
        shared.append((nxt or rest[0])["id"])
        if nxt is None:  # none can be followed by all the others: the first closes the group, the rest run alone
            break
        rest.remove(nxt)
    return [shared] + [[e["id"]] for e in entries if e["id"] not in shared]
