"""Worker side of exercise 4 in the lecture's notebook: the student's own training loop, capped.

Runs in the per-exercise child (grader.sandbox.inside.harness dispatches the `lecture_train` mode here),
with autograd locked out, once per case: a fresh namespace holding the grader's data
(`Xtr`, `Ytr` made from the case's batches; no names.txt) and the lecture's globals, then
the earlier cells' imports, functions and constants, then the cell's own set-up (the
student's re-initialisation), then the loop. The loop's iterable is wrapped so that it
yields at most `train.steps` items, and each time it is asked for the next one the
parameters, the gradients the student computed, the batch and the learning rate are
recorded. Statements the planner (grader.submission.lecture.train) marked (`loss.backward()`,
`p.grad = None`, plotting) become `pass`. Everything goes back as tensors, so that hidden
cases (whose free-text messages are dropped) still carry what grading needs.
"""

import ast
import builtins
import math
import signal
import time
import traceback

from grader.course.mlp import PARAMS

LECTURE_CHARS = ".abcdefghijklmnopqrstuvwxyz"
STEPS_NAME = "__grader_steps__"
MISSING = object()
TICK_NAME = "__grader_tick__"


class Timeout(BaseException):
    """The case's time ran out (a BaseException, so the student's `except Exception` misses it)."""


def _on_alarm(signum, frame):
    raise Timeout()


def _cmp(*args, **kwargs):
    return None  # the lecture's cmp reads .grad; the grader compares itself


def _tqdm(iterable=None, *args, **kwargs):
    return iterable  # progress bars: their import is not run (notebook tooling), the loop still is


def _trange(*args, **kwargs):
    return range(*args)


def _error(err: BaseException, cell: int, node: ast.stmt, step: int | None) -> dict:
    filename = f"<cell {cell}>"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
    line = frames[-1].lineno if frames else node.lineno
    if isinstance(err, Timeout):
        what = "did not finish in time (an endless or very long loop?)"
    else:
        what = "raised " + "".join(traceback.format_exception_only(type(err), err)).strip().splitlines()[-1]
    return {"cell": cell, "line": line, "what": what[:240], "step": step}


class _Rewrite(ast.NodeTransformer):
    """Cap the loop (wrap its iterable, or its condition) and turn the planned skips into `pass`."""

    def __init__(self, loop: tuple[int, int], skip: set[tuple[int, int]]):
        self.loop, self.skip = loop, skip

    def visit(self, node):
        if isinstance(node, ast.stmt) and (node.lineno, node.col_offset) in self.skip:
            return ast.copy_location(ast.Pass(), node)
        node = self.generic_visit(node)
        if isinstance(node, (ast.For, ast.While)) and (node.lineno, node.col_offset) == self.loop:
            if isinstance(node, ast.For):
                node.iter = ast.copy_location(ast.Call(ast.Name(STEPS_NAME, ast.Load()), [node.iter], []), node.iter)
            else:
                tick = ast.copy_location(ast.Call(ast.Name(TICK_NAME, ast.Load()), [], []), node.test)
                node.test = ast.copy_location(ast.BoolOp(ast.And(), [node.test, tick]), node.test)  # counts a step
        return node


class Capture:
    """Snapshots of the loop's state each time it starts an iteration, and once after it ends."""

    def __init__(self, ns: dict, exercise: dict, steps: int):
        self.ns, self.exercise, self.max_steps = ns, exercise, steps
        self.snaps: list[dict] = []
        self.started = 0

    def _params(self) -> dict:
        import torch

        ns, out = self.ns, {}
        listed = ns.get("parameters")
        for i, name in enumerate(PARAMS):
            value = ns.get(name)
            if not isinstance(value, torch.Tensor) and isinstance(listed, (list, tuple)) and len(listed) == len(PARAMS):
                value = listed[i]
            if isinstance(value, torch.Tensor):
                out[name] = value.detach().clone()
        return out

    def snapshot(self) -> None:
        """Parameters (copied), and references to what the step just ended left: gradients, batch, lr."""
        ns, ex = self.ns, self.exercise
        lr = ns.get(ex.get("lr_name", "lr"))
        try:
            lr = float(lr) if lr is not None else None
        except (TypeError, ValueError, RuntimeError):
            lr = None
        self.snaps.append({"params": self._params(), "named": {p: ns.get("d" + p, MISSING) for p in PARAMS},
                           "listed": ns.get(ex.get("grads_name", "grads")), "lr": lr,
                           "Xb": ns.get(ex.get("xb_name", "Xb")), "Yb": ns.get(ex.get("yb_name", "Yb"))})

    def steps(self, iterable):
        """The loop's iterable, capped: at most `max_steps` items in all (an outer loop may come back to it)."""
        if self.started >= self.max_steps:
            return
        if len(self.snaps) == self.started + 1:
            self.snaps.pop()  # entered again: the state now supersedes the one taken when it last ran out
        iterator = iter(iterable)
        while True:
            self.snapshot()  # before iteration `started`, which is also the end of the one before
            if self.started >= self.max_steps:
                return
            try:
                item = next(iterator)
            except StopIteration:
                return
            self.started += 1
            yield item

    def tick(self) -> bool:
        self.snapshot()
        if self.started >= self.max_steps:
            return False
        self.started += 1
        return True

    def finish(self) -> None:
        """After the loop statement: the end of the last iteration, if a `break` or an error skipped it."""
        if len(self.snaps) == self.started:
            self.snapshot()


SPLITS = {"tr": 182625, "dev": 22655, "te": 22866}  # the lecture's split sizes (names.txt, block_size 3)


def _data(tensors: dict) -> dict:
    """Xtr, Ytr (and the other splits) from the case's batches, the grader's data instead of names.txt.

    Tiled to the lecture's sizes, so a loop that hard-codes `torch.randint(0, 182625, ...)` still runs.
    """
    import torch

    xs = [tensors["Xb"]] + [tensors[k] for k in sorted(tensors) if k.startswith("traj.Xb.")]
    ys = [tensors["Yb"]] + [tensors[k] for k in sorted(tensors) if k.startswith("traj.Yb.")]
    X, Y = torch.cat(xs), torch.cat(ys)
    out = {}
    for split, size in SPLITS.items():
        times = -(-size // X.shape[0])
        out[f"X{split}"], out[f"Y{split}"] = X.repeat(times, 1)[:size].clone(), Y.repeat(times)[:size].clone()
    out["Xval"], out["Yval"] = out["Xdev"], out["Ydev"]
    return out


def namespace(tensors: dict, case: dict) -> dict:
    """The lecture's globals, with the case's own parameters (for a loop that does not re-initialise them)."""
    import torch
    import torch.nn.functional as F

    params = {k: tensors[k].clone() for k in PARAMS}
    vocab = params["C"].shape[0]
    ns = {"__name__": "__main__", "__builtins__": builtins, "torch": torch, "F": F, "cmp": _cmp,
          "n": int(case["ints"]["n"]), "batch_size": int(case["ints"]["n"]), "vocab_size": vocab,
          "block_size": tensors["Xb"].shape[1], "n_embd": params["C"].shape[1], "n_hidden": params["W1"].shape[1],
          "g": torch.Generator().manual_seed(2147483647), **params, "parameters": [params[k] for k in PARAMS]}
    if vocab == len(LECTURE_CHARS):
        ns["itos"] = dict(enumerate(LECTURE_CHARS))
        ns["stoi"] = {s: i for i, s in enumerate(LECTURE_CHARS)}
        ns["chars"] = list(LECTURE_CHARS[1:])
    return ns


def _run(entries: list[dict], ns: dict, deadline: float, errors: list | None) -> None:
    """Top-level statements of some cells, one at a time; failures recorded (or ignored), never raised."""
    for entry in entries:
        wanted = {tuple(p) for p in entry.get("run", [])}
        filename = f"<cell {entry['cell']}>"
        try:
            tree = ast.parse(entry["source"], filename)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            if (node.lineno, node.col_offset) in wanted:
                _exec(node, entry["cell"], filename, ns, deadline, errors)


def _exec(node, cell: int, filename: str, ns: dict, deadline: float, errors: list | None, step=None) -> bool:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        if errors is not None:
            errors.append({"cell": cell, "line": node.lineno, "what": "was not run: out of time", "step": step})
        return False
    try:
        from grader.sandbox.inside.lecture_cells import as_lecture_ran

        code = compile(ast.Module(body=[as_lecture_ran(node)], type_ignores=[]), filename, "exec")
        try:
            signal.setitimer(signal.ITIMER_REAL, remaining)
            exec(code, ns)  # noqa: S102 - student code, inside the sandboxed worker
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return True
    except BaseException as err:  # noqa: BLE001 - student code may raise anything
        if errors is not None:
            errors.append(_error(err, cell, node, step() if callable(step) else step))
        return False


def _step_grads(after: dict, before: dict, partial: bool) -> dict:
    """What the step's gradients are: the `grads` list the update zips with the parameters, else dC, dW1, ...

    For an iteration that raised, only the d... variables it assigned itself (never last step's values).
    """
    listed = after["listed"]
    if not partial and isinstance(listed, (list, tuple)) and len(listed) == len(PARAMS):
        return dict(zip(PARAMS, listed))
    return {p: v for p, v in after["named"].items() if v is not MISSING and not (partial and v is before["named"][p])}


def _send_steps(answers, capture: Capture, failed: bool) -> dict:
    """The snapshots as answers: param{k}.P before step k, grad{k}.P, Xb{k}, Yb{k}, lr{k}; then `steps`."""
    import torch

    snaps = capture.snaps
    done = len(snaps) - 1                                 # iterations whose end was recorded
    complete = done - 1 if failed and done > 0 else done  # the last one raised: it did not finish
    for s in range(complete + 1):
        for name, value in snaps[s]["params"].items():
            answers.add(f"param{s}.{name}", value)
    partial = False
    for s in range(done):
        before, after = snaps[s], snaps[s + 1]
        if s >= complete:
            if after["Xb"] is before["Xb"]:
                break  # it raised before drawing its batch: nothing of it can be graded
            partial = True
        grads = _step_grads(after, before, partial)
        for name in PARAMS:
            if name in grads:
                answers.add(f"grad{s}.{name}", grads[name])
            else:
                answers.notes[f"grad{s}.{name}"] = {"status": "missing", "message": "not defined by the loop"}
        for key in ("Xb", "Yb"):
            if isinstance(after[key], torch.Tensor):
                answers.add(f"{key}{s}", after[key])
        if after["lr"] is not None and math.isfinite(after["lr"]):
            answers.add(f"lr{s}", torch.tensor(after["lr"], dtype=torch.float64))
    answers.add("steps", torch.tensor([max(0, complete), int(partial)], dtype=torch.int64))
    for key in [k for k in answers.notes if not k.startswith("grad")]:
        del answers.notes[key]  # only the gradients' notes are read (a hidden case keeps the first 100 notes)
    return {"complete": max(0, complete), "partial": partial}


def run_train_loop(harness, exercise: dict, cases: list[dict], answers_cls) -> None:
    """Exercise 4's loop on each case; one result frame per case (grader.scoring.lecture_train grades it)."""
    from grader.sandbox.inside.lecture_cells import float_is_grading_dtype

    steps = int(harness.plan["sgd"]["steps"])
    cell, source = int(exercise["cell"]), exercise["source"]
    filename = f"<cell {cell}>"
    for case in cases:
        started = time.perf_counter()
        deadline = time.monotonic() + float(exercise.get("case_budget", 20.0))
        answers = answers_cls(case["max_numel"])
        facts = {"errors": [], "partial_error": None}
        meta = {"type": "result", "exercise": exercise["id"], "case": case["name"]}
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        try:
            tensors = harness.inputs(case)
            ns = namespace(tensors, case)
            _run(exercise.get("prelude", []), ns, deadline, None)  # imports, defs, constants: failures ignored
            ns.update(_data(tensors))
            for student, lecture in exercise.get("data_names", {}).items():  # X_train for Xtr
                if isinstance(student, str) and lecture in ns:
                    ns.setdefault(student, ns[lecture])
            ns["vocab_size"], ns["block_size"] = tensors["C"].shape[0], tensors["Xb"].shape[1]  # the data's shape
            ns["cmp"] = _cmp
            ns.setdefault("tqdm", _tqdm)
            ns.setdefault("trange", _trange)
            tree = ast.parse(source, filename)
            unit = next(node for node in tree.body if [node.lineno, node.col_offset] == exercise["unit"])
            unit = _Rewrite(tuple(exercise["loop"]), {tuple(p) for p in exercise.get("skip", [])}).visit(unit)
            if isinstance(unit, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # The loop lives in a function: its variables made global, so each step's state can be read.
                args = {a.arg for a in ast.walk(unit.args) if isinstance(a, ast.arg)}
                stored = sorted({n.id for n in ast.walk(unit) if isinstance(n, ast.Name)
                                 and isinstance(n.ctx, ast.Store)} - args)
                if stored:
                    unit.body.insert(0, ast.copy_location(ast.Global(names=stored), unit.body[0]))
            capture = Capture(ns, exercise, steps)
            ns[STEPS_NAME], ns[TICK_NAME] = capture.steps, capture.tick
            with float_is_grading_dtype():
                _run(exercise.get("setup", []), ns, deadline, facts["errors"])
                before = len(facts["errors"])
                ok = _exec(unit, cell, filename, ns, deadline, facts["errors"], step=lambda: capture.started)
                calls = {tuple(p) for p in exercise.get("calls", [])}
                for node in [node for node in tree.body if (node.lineno, node.col_offset) in calls] if ok else []:
                    ok = _exec(node, cell, filename, ns, deadline, facts["errors"], step=lambda: capture.started)
                capture.finish()
            if not ok and len(facts["errors"]) > before:
                err = facts["errors"][-1]
                facts["partial_error"] = f"cell {err['cell']}, line {err['line']} {err['what']}"
            facts.update(_send_steps(answers, capture, failed=not ok))
        except BaseException as err:  # noqa: BLE001 - a failure of the set-up, or student code escaping
            meta["error"] = {"message": f"exercise 4's loop stopped the grader ({type(err).__name__}: {err})"[:500],
                             "traceback": ""}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        facts["errors"] = facts["errors"][:20]
        meta["lecture"] = facts
        meta["seconds"] = time.perf_counter() - started
        harness.send_answers(meta, answers)
