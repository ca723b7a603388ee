"""The lecture's own notebook, as students complete it.

Students who follow the lecture fill in its starter notebook: cells under
`# Exercise 1` (the 26 gradients, `dlogprobs` ... `dC`), `# Exercise 2`
(a forward cell, then a backward cell computing `dlogits`) and
`# Exercise 3` (a forward cell, then `dhprebn` from `dhpreact`). This module
finds those sections in the notebook's cells and plans how to run them; the
worker (`grader.execute.run_lecture_exercise`) runs each exercise in its own
fresh namespace holding the grader's forward pass (the lecture's names and
shapes) and sends the `d...` variables back, which are graded like the
answers of `atomic`, `cross_entropy` and `batchnorm`.

What is run: in an exercise's section (from its header cell to the next
exercise header), every top-level statement, one at a time, except the ones
that plot, load data, train, call autograd or `cmp`; a statement that raises
costs only what it did not define. From the cells before the first exercise,
only imports and function definitions are run. Nothing else: no data
loading, no plotting, no training.

Imports only the standard library: the worker uses it too.
"""

import ast
import difflib
import re
from dataclasses import dataclass, field

from grader.exercises import ATOMIC, EXERCISES

GRADED = {1: "atomic", 2: "cross_entropy", 3: "batchnorm"}
NUMBER = {ex_id: number for number, ex_id in GRADED.items()}
NOT_IN_FORMAT = {
    "embedding": "not in this format: the lecture's notebook has no separate embedding exercise "
                 "(dC is graded as part of exercise 1)",
}
EXPECTED = {"atomic": ATOMIC, "cross_entropy": ("logits",), "batchnorm": ("hprebn",)}
PROVIDED = {"batchnorm": ("dhpreact",)}  # true gradients put in an exercise's namespace

# The lecture's shapes; only cases of this shape apply (the cells hard-code sizes).
LECTURE_SHAPE = {"n": 32, "block": 3, "n_embd": 10, "n_hidden": 64, "vocab": 27}

HEADER = re.compile(r"^\s*#+\s*\**\s*exercise\s*#?\s*(\d+)", re.IGNORECASE)
MID_HEADER = re.compile(r"^#+\s*exercise\s*#?\s*(\d+)\s*(?::|$)", re.IGNORECASE)
BOLD_HEADER = re.compile(r"^\s*\*\*\s*exercise\s*#?\s*(\d+)", re.IGNORECASE)
DOC_HEADER = re.compile(r"^\s*exercise\s*#?\s*(\d+)", re.IGNORECASE)

PLOT_NAMES = {"plt", "matplotlib", "sns", "seaborn", "plotly", "px"}
DATA_NAMES = {"open", "words", "Xtr", "Ytr", "Xdev", "Ydev", "Xte", "Yte", "Xval", "Yval",
              "build_dataset", "urllib", "requests", "wget", "subprocess"}
TRAIN_NAMES = {"max_steps", "lossi", "stepi", "optimizer", "split_loss"}
AUTOGRAD_ATTRS = {"grad", "backward", "retain_grad", "retains_grad", "requires_grad", "requires_grad_", "autograd",
                  "func", "vjp", "jvp", "grad_fn"}
SKIP_IMPORTS = ("matplotlib", "seaborn", "plotly", "IPython", "google", "google.colab", "tqdm", "wandb")


@dataclass
class Skipped:
    cell: int
    line: int
    reason: str
    names: list[str]


@dataclass
class AutogradUse:
    """A `.grad` read whose value reaches some of the exercise's answers."""

    cell: int
    line: int
    text: str                                       # e.g. `hpreact.grad`
    names: list[str] = field(default_factory=list)  # answers (d...) it reaches
    direct: list[str] = field(default_factory=list)  # answers assigned from it directly


@dataclass
class Section:
    """One graded exercise's cells and what the grader does with them."""

    number: int
    ex_id: str
    cells: list[dict] = field(default_factory=list)   # {"cell", "source", "run": [[line, col], ...]}
    skipped: list[Skipped] = field(default_factory=list)
    autograd: list[AutogradUse] = field(default_factory=list)
    statements: list[tuple[int, ast.stmt, str]] = field(default_factory=list)  # (cell, node, source), in order
    broken: list[tuple[int, str]] = field(default_factory=list)   # (cell, message): cells that do not parse

    @property
    def cell_numbers(self) -> list[int]:
        return sorted({c["cell"] for c in self.cells} | {cell for cell, _ in self.broken})


@dataclass
class LecturePlan:
    sections: dict[str, Section]
    prelude: list[dict]
    headers: list[tuple[int, int]]      # (cell, exercise number) in notebook order
    notes: list[str] = field(default_factory=list)
    train: object | None = None         # exercise 4's loop: grader.lecture_train.TrainPlan (hook)

    def exercise_cells(self) -> dict[str, list[int]]:
        cells = {ex_id: s.cell_numbers for ex_id, s in self.sections.items()}
        if self.train is not None:  # exercise 4: grader.lecture_train
            cells["train"] = self.train.cells
        return cells


# ---------------------------------------------------------------------------
# Finding the sections

def _leading_header(cell) -> int | None:
    """The exercise number a cell starts with: a `# Exercise N` comment or heading, or a docstring."""
    if cell.kind == "markdown":
        first = next((line for line in cell.raw.splitlines() if line.strip()), "")
        match = HEADER.match(first) or BOLD_HEADER.match(first)
        return int(match.group(1)) if match else None
    if cell.kind != "code":
        return None
    for line in (cell.source or cell.raw).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("pass  # IPython:"):
            continue
        if not stripped.startswith("#"):
            break
        match = HEADER.match(line)
        if match:
            return int(match.group(1))
    body = cell.tree.body if cell.tree is not None else []
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        first = next((line for line in body[0].value.value.splitlines() if line.strip()), "")
        match = DOC_HEADER.match(first)
        if match:
            return int(match.group(1))
    return None


def _mid_headers(cell) -> list[tuple[int, int]]:
    """(line, number) of `# Exercise N:` comment lines at column 0 after the cell's first code line."""
    if cell.kind != "code" or cell.tree is None:
        return []
    real = [node.lineno for node in cell.tree.body if node.lineno not in cell.ipython]  # not `%magic` stand-ins
    if not real:
        return []
    first_code = real[0]
    out = []
    for i, line in enumerate(cell.source.splitlines(), start=1):
        if i > first_code:
            match = MID_HEADER.match(line)
            if match:
                out.append((i, int(match.group(1))))
    return out


def _code_header_numbers(cells) -> set[int]:
    numbers = set()
    for cell in cells:
        if cell.kind == "code":
            lead = _leading_header(cell)
            numbers |= ({lead} if lead is not None else set()) | {n for _, n in _mid_headers(cell)}
    return numbers


def _cell_header(cell, code_numbers: set[int]) -> int | None:
    """A cell's leading header; a markdown heading counts only for exercises with no `# Exercise N` code cell."""
    number = _leading_header(cell)
    if cell.kind == "markdown" and number in code_numbers:
        return None  # e.g. notes about exercise 3 written inside exercise 2's section
    return number


def find_headers(cells) -> list[tuple[int, int]]:
    """(cell, exercise number) for every exercise header, in notebook order."""
    code_numbers = _code_header_numbers(cells)
    found = []
    for cell in cells:
        number = _cell_header(cell, code_numbers)
        if number is not None:
            found.append((cell.number, number))
        found += [(cell.number, n) for _, n in _mid_headers(cell)]
    return found


# ---------------------------------------------------------------------------
# Which statements run

NO_GRAD = {"no_grad", "inference_mode"}


def _is_no_grad_block(node) -> bool:
    """`with torch.no_grad():` (or inference_mode): the grader never builds a graph, so only its body matters."""
    return isinstance(node, ast.With) and all(
        isinstance(item.context_expr, ast.Call) and isinstance(item.context_expr.func, (ast.Attribute, ast.Name))
        and getattr(item.context_expr.func, "attr", getattr(item.context_expr.func, "id", "")) in NO_GRAD
        and item.optional_vars is None for item in node.items)


def units(body: list) -> list:
    """A cell's statements as the grader runs them: top level, with `torch.no_grad()` blocks opened up.

    Used by the planner and by the worker alike, so a position (line, column) names the same statement.
    """
    out = []
    for node in body:
        if _is_no_grad_block(node):
            out += units(node.body)
        else:
            out.append(node)
    return out


def _names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _attrs(node) -> set[str]:
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def assigned_names(node) -> set[str]:
    """Variables a statement binds or changes in place (`dC[ix] += ...`, `dC.index_add_(...)`)."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(sub.id)
        elif isinstance(sub, (ast.Subscript, ast.Attribute)) and isinstance(sub.ctx, ast.Store):
            base = sub.value
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
        elif (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
              and sub.func.attr.endswith("_") and isinstance(sub.func.value, ast.Name)):
            names.add(sub.func.value.id)  # in-place tensor methods: index_add_, zero_, ...
    return names


def _top_level_targets(node) -> set[str]:
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    names = set()
    for t in targets:
        names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


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


def reads_grad(node) -> bool:
    return any(isinstance(sub, ast.Attribute) and sub.attr == "grad" and isinstance(sub.ctx, ast.Load)
               for sub in ast.walk(node))


def uses_autograd(node) -> bool:
    """`.backward()`, `.retain_grad()`, `requires_grad`, `torch.autograd`, `torch.func`: the lecture's plumbing."""
    return bool(_attrs(node) & AUTOGRAD_ATTRS) or any(
        isinstance(sub, ast.Name) and sub.id in ("autograd", "functorch") for sub in ast.walk(node))


def skip_reason(node) -> str | None:
    """Why a statement of an exercise section is not run, or None to run it."""
    if reads_grad(node):
        return "reads autograd's gradient (.grad)"
    if uses_autograd(node):
        return "autograd (.backward, .retain_grad, requires_grad)"
    if any(name.startswith("d") for name in _top_level_targets(node)):
        return None  # computes a gradient: always run
    if _is_cmp_call(node):
        return "a cmp check (the grader compares itself)"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if any(m == s or m.startswith(s + ".") for m in modules for s in SKIP_IMPORTS):
            return "plotting or notebook tooling"
        return None
    names, attrs = _names(node), _attrs(node)
    strings = [s.value for s in ast.walk(node) if isinstance(s, ast.Constant) and isinstance(s.value, str)]
    if names & PLOT_NAMES or attrs & {"imshow", "plot", "hist", "figure"}:
        return "plotting"
    if names & DATA_NAMES or any("names.txt" in s or "://" in s for s in strings):
        return "data loading"
    if _has_loop(node) and (names & TRAIN_NAMES or attrs & {"backward", "step", "zero_grad"} or _big_range(node)
                            or any(isinstance(s, ast.While) and isinstance(s.test, ast.Constant) and s.test.value
                                   for s in ast.walk(node))):
        return "a training or sampling loop"
    return None


def _grad_reads(node, source: str) -> list[tuple[int, str]]:
    return [(sub.lineno, ast.get_source_segment(source, sub) or ".grad") for sub in ast.walk(node)
            if isinstance(sub, ast.Attribute) and sub.attr == "grad" and isinstance(sub.ctx, ast.Load)]


def autograd_uses(sec: "Section") -> list[AutogradUse]:
    """The `.grad` reads whose values flow into the exercise's answers, in statement order.

    `dhpreact = hpreact.grad` in exercise 1 makes dhpreact (and what is computed from it) autograd's;
    in exercise 3, where the grader supplies the true dhpreact, the same line is harmless. A `.grad`
    that is only printed or compared reaches no answer and is not a use.
    """
    expected = {"d" + name for name in EXPECTED[sec.ex_id]}
    provided = set(PROVIDED.get(sec.ex_id, ()))
    tainted: dict[str, tuple[AutogradUse, bool]] = {}   # name -> (its source, assigned directly)
    for cell, node, source in sec.statements:
        names = assigned_names(node) - provided
        reads = _grad_reads(node, source)
        if reads:
            use = AutogradUse(cell, reads[0][0], reads[0][1])
            for name in names:
                tainted[name] = (use, True)
            continue
        loaded = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        source_use = next((tainted[n][0] for n in sorted(loaded) if n in tainted), None)
        for name in names:
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


def _is_prelude(node) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return skip_reason(node) is None
    return isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name != "cmp"


def build_plan(cells) -> LecturePlan:
    """The graded exercises' sections (and the prelude) of a lecture-format notebook."""
    sections: dict[str, Section] = {}
    prelude: list[dict] = []
    headers: list[tuple[int, int]] = []
    current: int | None = None     # the exercise whose section we are in (None: before the first header)

    def section(number: int | None) -> Section | None:
        if number not in GRADED:
            return None
        return sections.setdefault(GRADED[number], Section(number, GRADED[number]))

    code_numbers = _code_header_numbers(cells)
    for cell in cells:
        lead = _cell_header(cell, code_numbers)
        if lead is not None:
            current = lead
            headers.append((cell.number, lead))
            section(current)
        if cell.kind != "code":
            continue
        if cell.tree is None:
            target = section(current)
            if target is not None and cell.error:
                target.broken.append((cell.number, f"cell {cell.number} does not parse ({cell.error}), "
                                                   "so none of it ran"))
            continue
        mids = _mid_headers(cell)
        runs: dict[int | None, list[list[int]]] = {}
        members = {current} if current is not None else set()
        for node in units(cell.tree.body):
            while mids and mids[0][0] <= node.lineno:
                current = mids.pop(0)[1]
                headers.append((cell.number, current))
                members.add(current)
            if current is None:
                if _is_prelude(node):
                    runs.setdefault(None, []).append([node.lineno, node.col_offset])
                continue
            target = section(current)
            if target is None:
                continue
            target.statements.append((cell.number, node, cell.source))
            reason = skip_reason(node)
            if reason is None:
                runs.setdefault(current, []).append([node.lineno, node.col_offset])
            else:
                target.skipped.append(Skipped(cell.number, node.lineno, reason, sorted(assigned_names(node))))
        for _, number in mids:  # headers after the last statement
            current = number
            headers.append((cell.number, number))
            members.add(number)
        if runs.get(None):
            prelude.append({"cell": cell.number, "source": cell.source, "run": runs[None]})
        for number in sorted(n for n in members if n is not None):
            target = section(number)
            if target is not None:  # a cell with nothing to run still belongs to its section
                target.cells.append({"cell": cell.number, "source": cell.source, "run": runs.get(number, [])})

    plan = LecturePlan(sections=sections, prelude=prelude, headers=headers)
    for sec in sections.values():
        sec.autograd = autograd_uses(sec)
        for name in PROVIDED.get(sec.ex_id, ()):
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
    missing = [f"'# Exercise {n}'" for n, ex_id in GRADED.items() if ex_id not in sections]
    if missing:
        plan.notes.append(f"not found in the notebook: {', '.join(missing)}")
    from grader.lecture_train import find_train  # exercise 4 (hook): found and planned there

    plan.train = find_train(cells)
    plan.notes += plan.train.notes() if plan.train is not None else []
    return plan


# ---------------------------------------------------------------------------
# Grading: cases, plan entries for the worker, messages

def lecture_cases(cases) -> list:
    """The cases the lecture's cells can run on: the public `lecture` case and hidden cases of its shape."""
    def lecture_shaped(c):
        return all(getattr(c.spec, k) == v for k, v in LECTURE_SHAPE.items())

    public = [c for c in cases if not c.spec.hidden and c.spec.name == "lecture"]
    public = public or [c for c in cases if not c.spec.hidden and lecture_shaped(c)]
    return public + [c for c in cases if c.spec.hidden and lecture_shaped(c)]


def plan_entries(plan: LecturePlan, timeout: float, n_cases: int) -> dict[str, dict]:
    entries = {}
    budget = 0.85 * timeout / max(1, n_cases)
    for ex_id, sec in plan.sections.items():
        entries[ex_id] = {"mode": "lecture", "number": sec.number, "cells": sec.cells, "prelude": plan.prelude,
                          "provided": list(PROVIDED.get(ex_id, ())), "expected": list(EXPECTED[ex_id]),
                          "case_budget": budget, "statement_timeout": max(1.0, min(10.0, budget / 2))}
    if plan.train is not None:  # exercise 4 (hook): grader.lecture_train / grader.train_loop
        from grader.lecture_train import plan_entry

        entries["train"] = plan_entry(plan.train, timeout, n_cases)
    return entries


def near_matches(name: str, candidates) -> list[str]:
    """Variables whose names look like a typo of `name` (dlogits_maxes for dlogit_maxes)."""
    lowered = {c.lower(): c for c in candidates if c != name}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=2, cutoff=0.8)
    return [lowered[h] for h in hits]


def _where(cell: int, line: int) -> str:
    return f"cell {cell}, line {line}"


def missing_message(var: str, sec: Section, facts: dict) -> str:
    number = sec.number
    uses = [u for u in sec.autograd if var in u.names]
    if uses:
        u = uses[-1]
        if var in u.direct:
            return (f"{var} reads autograd's gradient ({u.text}, {_where(u.cell, u.line)}): the grader's tensors "
                    "carry no .grad, so compute it by hand")
        return (f"{var} is computed from autograd's gradient ({u.text}, {_where(u.cell, u.line)}), "
                "not by hand, so it was not graded as your work")
    for err in facts.get("errors", []):
        if var in err.get("names", []):
            return f"{var} was not computed: {_where(err['cell'], err['line'])} {err['what']}"
    for late in facts.get("late", []):
        if var in late.get("names", []):
            return (f"{var} was not computed: the exercise ran out of time before {_where(late['cell'], late['line'])} "
                    "(an earlier statement ran too long)")
    skipped = [s for s in sec.skipped if var in s.names]
    if skipped:
        s = skipped[-1]
        return (f"{var} is only computed in {_where(s.cell, s.line)}, which the grader does not run "
                f"({s.reason})")
    answers = {"d" + name for name in EXPECTED[sec.ex_id]}
    near = near_matches(var, [name for name in facts.get("defined", []) if name not in answers])
    if near:
        return f"{var} is not defined by exercise {number}'s cells; found {' and '.join(near)}: a typo?"
    if sec.broken:
        return f"{var} is not defined by exercise {number}'s cells ({sec.broken[0][1]})"
    extra = ""
    if number in (2, 3):
        extra = " (each exercise runs on its own: a value from another exercise's cells does not count)"
    return f"{var} is not defined by exercise {number}'s cells{extra}"


def enrich_run(run, sec: Section) -> None:
    """Before scoring: messages for missing and None answers, written for this notebook."""
    for meta, _ in run.results.values():
        facts = meta.get("lecture") if isinstance(meta.get("lecture"), dict) else {}
        notes = meta.setdefault("notes", {})
        if not isinstance(notes, dict):
            continue
        for name in EXPECTED[sec.ex_id]:
            var = "d" + name
            note = notes.get(name)
            if note is None:
                notes[name] = {"status": "missing", "message": missing_message(var, sec, facts)}
            elif note.get("status") == "not_implemented":
                uses = [u for u in sec.autograd if var in u.names]
                if uses:
                    notes[name] = {"status": "not_implemented", "message": missing_message(var, sec, facts)}
                else:
                    notes[name] = {"status": "not_implemented", "message": f"{var} is still None: not attempted yet"}


def annotate_result(result, sec: Section, run, nb_name: str) -> list:
    """After scoring: notes on passing answers, autograd reads, cell names. Returns integrity findings."""
    from grader.report import IntegrityFinding

    result.file = nb_name
    cells = sec.cell_numbers
    result.function = f"cell {cells[0]}" if len(cells) == 1 else f"cells {', '.join(map(str, cells))}"
    zero = set()
    changed = set()
    for meta, _ in run.results.values():
        facts = meta.get("lecture") if isinstance(meta.get("lecture"), dict) else {}
        zero |= set(facts.get("zero_filled", []))
        changed |= set(facts.get("changed", []))
    flagged = {}
    for use in sec.autograd:
        for var in use.names:
            flagged.setdefault(var, use)
    for check in result.checks:
        var = "d" + check.name
        for case in check.cases:
            if check.name in zero and case.passed:
                case.note = (f"{var} is not defined; it is exactly zero (subtracting the max does not change "
                             "the softmax), so leaving it out is right")
            if var in flagged and not case.passed:
                case.status = "not_allowed"
        if check.name in zero and check.status == "passed":
            check.hint = check.hint or "not defined, and zero is the right answer"
    findings = []
    for use in sec.autograd:
        findings.append(IntegrityFinding(exercise=sec.ex_id, file=f"cell {use.cell}", line=use.line,
                                         pattern=".grad",
                                         message=f"exercise {sec.number} reads autograd's gradient ({use.text})"))
    if sec.autograd:
        first = sec.autograd[0]
        result.message = (f"uses autograd's gradient ({first.text}, {_where(first.cell, first.line)}); "
                          + result.message)
    if result.status in ("timeout", "crashed"):
        result.message = result.message.replace(EXERCISES[sec.ex_id].function, f"exercise {sec.number}'s cells", 1)
    if result.checks and all(c.status == "failed" for c in result.checks) and all(
            case.status == "missing" for c in result.checks for case in c.cases):
        result.message = (f"not attempted: exercise {sec.number}'s cells define none of its gradients "
                          f"({', '.join('d' + c.name for c in result.checks[:3])}{', ...' if len(result.checks) > 3 else ''})")
    if changed:
        result.message += f" (note: these cells reassign forward variables: {', '.join(sorted(changed)[:6])})"
    return findings


def _run_notes(run, sec: Section, cases) -> list[str]:
    """What went wrong while the cells ran on the first public case (never a hidden one), for the report."""
    public = [c.spec.name for c in cases if not c.spec.hidden]
    frame = next((run.results[name] for name in public if name in run.results), None)
    facts = frame[0].get("lecture") if frame and isinstance(frame[0].get("lecture"), dict) else {}
    notes = [f"exercise {sec.number}: {_where(e['cell'], e['line'])} {e['what']}"
             for e in facts.get("errors", [])[:5] if isinstance(e, dict)]
    late = facts.get("late", [])
    if late:
        notes.append(f"exercise {sec.number}: {len(late)} statement(s) not run: the exercise ran out of time")
    return notes


def score(plan: LecturePlan, enabled: list[str], config, cases, outcome, nb_name: str):
    """ExerciseResults for a lecture notebook, plus integrity findings."""
    from grader.report import ExerciseResult
    from grader.scoring import score_exercise

    results, findings = [], []
    for ex_id in enabled:
        ex = EXERCISES[ex_id]
        if ex_id == "train":  # exercise 4 (hook): graded by grader.lecture_train
            from grader import lecture_train

            results.append(lecture_train.score(plan.train, config, cases, outcome.exercises.get(ex_id), nb_name))
            findings += lecture_train.findings(plan.train)
            continue
        if ex_id in NOT_IN_FORMAT:
            results.append(ExerciseResult(id=ex_id, title=ex.title, file=nb_name, function="-", score=0.0,
                                          max_score=0.0, status="not_submitted", message=NOT_IN_FORMAT[ex_id],
                                          checks=[]))
            continue
        sec = plan.sections.get(ex_id)
        if sec is None:
            result = score_exercise(ex_id, config, cases, None)
            message = (f"exercise {NUMBER[ex_id]} is not in the notebook "
                       f"(no cell starts with '# Exercise {NUMBER[ex_id]}')")
            result.message, result.file, result.function = message, nb_name, "-"
            for check in result.checks:
                check.message = message
            results.append(result)
            continue
        run = outcome.exercises.get(ex_id)
        if run is not None:
            enrich_run(run, sec)
            plan.notes += _run_notes(run, sec, cases)
        result = score_exercise(ex_id, config, cases, run)
        if run is not None:
            findings += annotate_result(result, sec, run, nb_name)
        results.append(result)
    return results, findings


NO_LECTURE_CASE = ("this is the lecture's notebook, whose cells use the lecture's sizes, but grading.yaml has no "
                   "public case named 'lecture' or with the lecture's shape (n=32, block=3, n_embd=10, "
                   "n_hidden=64, vocab=27)")


def has_lecture_case(config) -> bool:
    return any(c.name == "lecture" or all(getattr(c, k) == v for k, v in LECTURE_SHAPE.items())
               for c in config.cases)
