"""Finding the lecture's exercises by what their code computes.

Headers are only hints (misspelled, missing, custom titles), so `grader.submission.lecture.plan` also asks
each code cell what it computes:

- exercise 1: it assigns some of the contract's `d...` gradients (`dlogprobs` ... `dC`);
- exercise 2: it computes `dlogits` in one go, from `logits` and no other gradient;
- exercise 3: it computes `dhprebn` in one go, from `dhpreact` and no other gradient of exercise 1;
- exercise 4: a training loop that updates the parameters (left to the `train` grading).

Imports only the standard library: the planner runs on every notebook.
"""

import ast
import re

from grader.course.mlp import ATOMIC
from grader.sandbox.inside.statements import SUFFIX, assigned_names, loads, units
from grader.submission.lecture.names import cmp_calls
from grader.submission.lecture import sections as lecture_sections

D_ATOMIC = {"d" + name for name in ATOMIC}
BN_LOCAL = {"dhprebn", "dbnraw", "dbnvar_inv", "dbnvar", "dbndiff", "dbndiff2", "dbnmeani", "dbngain", "dbnbias"}
ONE_GO = {"dlogits": 2, "dhprebn": 3}
TRAIN_NAMES = {"max_steps", "lossi", "stepi", "optimizer", "lr", "learning_rate"}


ASSIGNMENT = re.compile(r"^\s*(d\w+)\s*(?:\[[^\]\n]*\])?\s*(?:[-+*/@]|\*\*)?=(?!=)", re.MULTILINE)


def _function_free(body: list) -> list:
    return [node for node in units(body) if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                     ast.ClassDef))]


def canonical(name: str) -> str:
    """`dlogits_fast` -> `dlogits`: the answer a suffixed name stands for (itself otherwise)."""
    match = SUFFIX.match(name)
    if match and match.group(1) in D_ATOMIC:
        return match.group(1)
    return name


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
    if cell.kind != "code":
        return None
    if cell.tree is None:  # does not parse: judged by the gradients its lines assign, so its errors are reported
        answers = {canonical(m.group(1)) for m in ASSIGNMENT.finditer(cell.source or cell.raw)} & D_ATOMIC
        if answers == {"dlogits"}:
            return 2
        if "dhprebn" in answers and answers <= BN_LOCAL:
            return 3
        return 1 if answers else None
    from grader.submission.lecture.train import _training_loop  # exercise 4's own finder: `p -= lr * grad` too

    nodes = _function_free(cell.tree.body)
    if any(_is_training_loop(node) or _training_loop(node) is not None for node in nodes):
        return 4
    assigned: set[str] = set()
    free_d: set[str] = set()     # gradients read before the cell assigns them
    for node in nodes:
        free_d |= {name for name in (loads(node) - assigned) if canonical(name) in D_ATOMIC}
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
    if header not in OWN or cell.kind != "code" or cell.tree is None:
        return []
    answers = {canonical(name) for node in _function_free(cell.tree.body) for name in assigned_names(node)} & D_ATOMIC
    if not answers or answers & OWN[header]:
        return []
    # Only a fix the student checked there: scratch work while deriving the one-go formula has no cmp of its own.
    checked = {call.answer for call in cmp_calls(cell) if not call.commented}
    return sorted(answers) if checked & answers else []


def _spans(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers[:8]) + (f" and {len(numbers) - 8} more" if len(numbers) > 8 else "")


def _cells_do(numbers: list[int], what: tuple[str, str]) -> str:
    """`cell 11 assigns ...` / `cells 11, 12 assign ...`."""
    return f"cell {numbers[0]} {what[0]}" if len(numbers) == 1 else f"cells {_spans(numbers)} {what[1]}"


def found_notes(plan, placed: dict, roles: dict, cells) -> None:
    """What the grader assumed about where the work is, in the notes."""
    graded = lecture_sections.graded()
    by_cell = {cell.number: cell for cell in cells}
    headed = {n for _, n in plan.headers}
    for cell_number, number in plan.headers:
        cell = by_cell.get(cell_number)
        text = (cell.raw if cell is not None else "").strip().splitlines()
        first = next((line.strip() for line in text if line.strip()), "")
        word = re.search(r"ex[a-z]{3,9}", first, re.IGNORECASE)
        if number in graded and word and word.group(0).lower() != "exercise":
            plan.notes.append(f"exercise {number}: cell {cell_number}'s header {first[:60]!r} read as "
                              f"'Exercise {number}'")
    for number, ex_id in graded.items():
        what = (lecture_sections.found_by(ex_id), lecture_sections.found_by(ex_id, many=True))
        sec = plan.sections.get(ex_id)
        if sec is None:
            continue
        by_code = [c for c in sec.cell_numbers if placed.get(c) == number and roles.get(c) == number]
        if number not in headed and by_code:
            plan.notes.append(f"exercise {number}: no '# Exercise {number}' header; {_cells_do(by_code, what)}, "
                              f"so {'it was' if len(by_code) == 1 else 'they were'} graded as exercise {number}")
        elif by_code:
            first_header = min(c for c, n in plan.headers if n == number)
            before = [c for c in by_code if c < first_header]
            if before:
                come = "comes" if len(before) == 1 else "come"
                plan.notes.append(f"exercise {number}: {'cell' if len(before) == 1 else 'cells'} {_spans(before)} "
                                  f"{come} before its header (cell {first_header}) and "
                                  f"{what[len(before) > 1]}: graded as exercise {number}")
    atomic = plan.sections.get(graded.get(1, ""))  # exercise 1: every gradient, one step at a time
    for cell_number in atomic.cell_numbers if atomic is not None else []:
        under = [n for c, n in plan.headers if c <= cell_number]
        if under and under[-1] in (2, 3) and placed.get(cell_number) == 1:
            plan.notes.append(f"exercise 1: cell {cell_number}, under exercise {under[-1]}'s header, assigns only "
                              "exercise 1's gradients: graded as exercise 1, after its earlier cells")
    if plan.training_cells:
        plan.notes.append(f"exercise 4: {_cells_do(plan.training_cells, ('trains the network', 'train the network'))}; "
                          "that is not part of exercises 1 to 3")
