"""The plan for a lecture notebook: each graded exercise's cells and the statements that run.

Students who follow the lecture fill in its starter notebook: exercise 1 (the
26 gradients, `dlogprobs` ... `dC`), exercise 2 (`dlogits` in one go) and
exercise 3 (`dhprebn` in one go from `dhpreact`). This module finds each
exercise's cells and plans how to run them; the worker
(`grader.sandbox.inside.execute.run_lecture_exercise`) runs each exercise in its own fresh
namespace holding the grader's forward pass (the lecture's names and shapes)
and sends the `d...` variables back, which are graded like the answers of
the exercises whose definition names a lecture section (`grader.scoring.lecture`).

Where the work is: what a cell computes decides (`grader.submission.lecture.find`:
gradients of exercise 1, a one-go dlogits or dhprebn, a training loop);
`# Exercise N` headers (`grader.submission.lecture.headers`), misspelled or not, place the
cells around them. A cell before any header goes where its code says, so does a one-go cell
under another exercise's header when its own exercise has no header; exercise 4's
training loop is never part of exercises 1 to 3 (`LecturePlan.training_cells`).

What is run (`grader.submission.lecture.policy`): in an exercise's cells, every top-level
statement, one at a time, except the ones that plot, load data, train, `cmp`, or are the
lecture's own autograd plumbing (`loss.backward()`, `retain_grad()`); a statement that
raises costs only what it did not define. From the other cells before it,
imports, function definitions and literal constants. The statements that run
get the same static check as .py files (`scan_plan`). Nothing else: no data
loading, no plotting, no training.

Imports only the standard library: the planner runs on every notebook.
"""

import ast
import re
from dataclasses import dataclass, field

from grader.course.registry import EXERCISES
from grader.sandbox.inside.statements import assigned_names, loads, units
from grader.submission.lecture.find import cell_role, found_notes, revisits_exercise_1
from grader.submission.lecture.headers import cell_header, code_header_numbers, find_headers, mid_headers
from grader.submission.lecture.names import bound_names, name_maps
from grader.submission.lecture.policy import AutogradUse, autograd_uses, is_prelude, reads_grad, skip_reason
from grader.submission.lecture.policy import top_level_targets
from grader.submission.lecture import sections as lecture_sections



@dataclass
class Skipped:
    cell: int
    line: int
    reason: str
    names: list[str]




@dataclass
class Section:
    """One graded exercise's cells and what the grader does with them."""

    number: int
    ex_id: str
    expected: tuple[str, ...] = ()    # the answers, by the name of their tensor (`logits` for dlogits)
    provided: tuple[str, ...] = ()    # true gradients put in the exercise's namespace (`dhpreact`)
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
    train: object | None = None         # exercise 4's loop: grader.submission.lecture.train.TrainPlan
    train_id: str | None = None         # the exercise graded from that loop

    def exercise_cells(self) -> dict[str, list[int]]:
        cells = {ex_id: s.cell_numbers for ex_id, s in self.sections.items()}
        if self.train is not None:  # exercise 4: grader.submission.lecture.train
            cells[self.train_id] = self.train.cells
        return cells




def section_prelude(plan: "LecturePlan", sec: "Section") -> list[dict]:
    """The prelude statements an exercise needs: those defining names its statements read (and what
    those read in turn), from the cells before its last one. An unused `import os` stays out."""
    last = max(sec.cell_numbers, default=0)
    wanted: set[str] = set()
    for _, node, _ in sec.statements:
        wanted |= loads(node)
    candidates = [(cell, node, source) for cell, node, source in plan.prelude_nodes if cell < last]
    chosen: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, (_, node, _) in enumerate(candidates):
            if i not in chosen and bound_names(node) & wanted:
                chosen.add(i)
                wanted |= loads(node)
                changed = True
    entries: dict[int, dict] = {}
    for i in sorted(chosen):
        cell, node, source = candidates[i]
        entry = entries.setdefault(cell, {"cell": cell, "source": source, "run": []})
        entry["run"].append([node.lineno, node.col_offset])
    return [entries[cell] for cell in sorted(entries)]


EXCLUDED = 0  # a cell in no section and not in the prelude: exercise 4's training loop


def _placement(cells, code_numbers: set[int], graded) -> tuple[dict[int, int | None], dict[int, int | None]]:
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
        lead = cell_header(cell, code_numbers)
        if lead is not None:
            current = lead
        if cell.kind != "code":
            continue
        mids = mid_headers(cell)
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
        elif header in graded:
            moved = role in (2, 3) and role != header and role not in with_header
            if role == 1 and revisits[number]:  # back to exercise 1 after exercise 2 or 3
                moved, role = True, 1
            placed[number] = role if moved else header
        elif header is None:  # before any header: where its code says
            placed[number] = role if role in graded else None
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
        if number not in graded:
            return None
        ex_id = graded[number]
        return sections.setdefault(ex_id, Section(number, ex_id, lecture_sections.expected(ex_id),
                                                  lecture_sections.given(ex_id)))

    code_numbers = code_header_numbers(cells)
    graded = lecture_sections.graded()
    placed, roles = _placement(cells, code_numbers, graded)
    skipped_defs: dict[int, dict[str, str]] = {}   # per section: functions not run -> why
    provided_notes: list[str] = []
    checkers = {node.name for cell in cells if cell.kind == "code" and cell.tree is not None
                for node in cell.tree.body if isinstance(node, ast.FunctionDef) and reads_grad(node)}
    for cell in cells:
        lead = cell_header(cell, code_numbers)
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
        mids = mid_headers(cell)
        source, tree = cell.source, cell.tree
        if not mids and where in graded and lecture_sections.given(graded[where]):
            source, tree = _given_reads(cell, where, lecture_sections.given(graded[where]), provided_notes)
        runs: dict[int | None, list[list[int]]] = {}
        members = {where} if where is not None else set()
        for node in units(tree.body):
            while mids and mids[0][0] <= node.lineno:
                current = where = mids.pop(0)[1]
                headers.append((cell.number, current))
                members.add(current)
            if where is None:
                if is_prelude(node):
                    runs.setdefault(None, []).append([node.lineno, node.col_offset])
                continue
            target = section(where)
            if target is None:
                continue
            target.statements.append((cell.number, node, source))
            reason = skip_reason(node, checkers)
            not_run = skipped_defs.setdefault(where, {})
            if reason is None and not any(n.startswith("d") for n in top_level_targets(node)):
                used = sorted(loads(node) & set(not_run))
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
                            for name in bound_names(node)})
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
    found_notes(plan, placed, roles, cells)
    plan.notes += provided_notes
    name_maps(plan, cells)
    for sec in sections.values():
        sec.autograd = autograd_uses(sec.statements, {"d" + name for name in sec.expected}, sec.provided)
        for name in sec.provided:
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
    for number, ex_id in graded.items():
        if ex_id not in sections:
            plan.notes.append(f"not found in the notebook: exercise {number} ({lecture_sections.not_found(ex_id)})")
    from grader.submission.lecture.train import find_train  # exercise 4: found and planned there

    loop_exercise = lecture_sections.training_loop()
    if loop_exercise is not None:
        plan.train, plan.train_id = find_train(cells), loop_exercise.id
    plan.notes += plan.train.notes() if plan.train is not None else []
    return plan



def plan_entries(plan: LecturePlan, timeout: float, n_cases: int) -> dict[str, dict]:
    entries = {}
    budget = 0.85 * timeout / max(1, n_cases)
    for ex_id, sec in plan.sections.items():
        entries[ex_id] = {"mode": "lecture", "number": sec.number, "cells": sec.cells,
                          "prelude": section_prelude(plan, sec),
                          "provided": list(sec.provided), "expected": list(sec.expected),
                          "aliases": sec.aliases, "forward_aliases": sec.forward_aliases,
                          "forward_cell": sec.forward_cell,
                          "case_budget": budget, "statement_timeout": max(1.0, min(10.0, budget / 2))}
    if plan.train is not None:  # exercise 4 (hook): grader.submission.lecture.train / grader.sandbox.inside.train_loop
        from grader.submission.lecture.train import plan_entry

        entries[plan.train_id] = plan_entry(plan.train, timeout, n_cases)
    return entries


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

