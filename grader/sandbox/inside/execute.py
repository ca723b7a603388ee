"""Running notebook code: the lecture's exercise cells, and whole notebooks (grade --execute).

Student code in a notebook only ever runs inside the sandboxed worker
(`python -m grader.sandbox.inside`), never in the grading process:

- `run_lecture_exercise` (worker side, the `lecture` exercise mode): runs one
  exercise's cells of a lecture-format notebook (planned by `grader.submission.lecture`)
  statement by statement in a fresh namespace holding the grader's forward
  pass, once per case, and sends the `d...` variables back as answers, with
  facts for the report (which statement raised, which names exist).
- `run_notebook` (worker side, the `execute` plan mode): runs the whole
  notebook top to bottom with nbclient; the kernel is started by the worker,
  so it lives inside the same sandbox (namespaces, rlimits, scrubbed
  environment, no network), with a per-cell timeout. It reports every cell's
  outcome on the answer channel.
- `execute_notebook` (grading process side): starts that worker and turns
  its frames into the report's `NotebookExecution`. It never changes the score.
"""

import ast
import builtins
import json
import os
import re
import signal
import tempfile
import time
import traceback
from pathlib import Path

from grader.course.mlp import FORWARD_ARGS, PARAMS
from grader.sandbox.inside.statements import answer_candidates, assigned_names, near_matches, units

LECTURE_CHARS = ".abcdefghijklmnopqrstuvwxyz"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# ---------------------------------------------------------------------------
# Worker side: the lecture's exercise cells

class StatementTimeout(BaseException):
    """Raised by the alarm in a statement that runs too long (a BaseException, so `except Exception` misses it)."""


def _on_alarm(signum, frame):
    raise StatementTimeout()


def _cmp(*args, **kwargs):
    """The lecture's cmp, made harmless: the grader compares the answers itself."""
    return None


def _error(err: BaseException, cell: int, node: ast.stmt, limit: float) -> dict:
    filename = f"<cell {cell}>"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
    line = frames[-1].lineno if frames else node.lineno
    if isinstance(err, StatementTimeout):
        what = f"did not finish within {limit:g} s (an endless or very long loop?)"
    else:
        what = "raised " + "".join(traceback.format_exception_only(type(err), err)).strip().splitlines()[-1]
    return {"cell": cell, "line": line, "what": what[:240], "names": sorted(assigned_names(node))[:20]}


def run_statements(entries: list[dict], ns: dict, deadline: float, limit: float,
                   errors: list | None = None, late: list | None = None) -> None:
    """Run the planned top-level statements of some cells, one at a time; failures are recorded, not raised."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for entry in entries:
            wanted = {tuple(p) for p in entry.get("run", [])}
            if not wanted:
                continue
            filename = f"<cell {entry['cell']}>"
            try:
                tree = ast.parse(entry["source"], filename)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue  # the grading process planned this cell from the same parse: cannot happen
            for node in units(tree.body):
                if (node.lineno, node.col_offset) not in wanted:
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if late is not None:
                        late.append({"cell": entry["cell"], "line": node.lineno,
                                     "names": sorted(assigned_names(node))[:20]})
                    continue
                seconds = min(limit, remaining)
                try:
                    code = compile(ast.Module(body=[as_lecture_ran(node)], type_ignores=[]), filename, "exec")
                    try:
                        signal.setitimer(signal.ITIMER_REAL, seconds)
                        exec(code, ns)  # noqa: S102 - student code, inside the sandboxed worker
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                except BaseException as err:  # noqa: BLE001 - student code may raise anything
                    if errors is not None:
                        errors.append(_error(err, entry["cell"], node, seconds))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def lecture_globals(tensors: dict, case: dict, provided: list[str]) -> dict:
    """The grader's forward pass under the lecture's names, and the lecture's other globals."""
    import torch
    import torch.nn.functional as F

    values = {name: tensors[name].clone() for name in FORWARD_ARGS}
    n = int(case["ints"]["n"])
    values["loss"] = -values["logprobs"][torch.arange(n), values["Yb"]].mean()
    for name in provided:
        values[name] = tensors[name].clone()
    vocab = values["C"].shape[0]
    extra = {
        "torch": torch, "F": F, "cmp": _cmp,
        "n": n, "batch_size": n, "vocab_size": vocab, "block_size": values["Xb"].shape[1],
        "n_embd": values["C"].shape[1], "n_hidden": values["W1"].shape[1],
        "g": torch.Generator().manual_seed(2147483647),
    }
    if vocab == len(LECTURE_CHARS):
        extra["itos"] = dict(enumerate(LECTURE_CHARS))
        extra["stoi"] = {s: i for i, s in enumerate(LECTURE_CHARS)}
        extra["chars"] = list(LECTURE_CHARS[1:])
    return values, extra


class float_is_grading_dtype:
    """`.float()` gives the grading dtype while the lecture's cells run.

    The lecture works in float32, so its cells often say `F.one_hot(...).float()`; graded in float64
    that would mix dtypes (a matmul refuses) or lose precision. Only inside a lecture exercise's child.
    """

    def __enter__(self):
        import torch

        self.original = torch.Tensor.float
        dtype = torch.get_default_dtype()
        if dtype != torch.float32:
            torch.Tensor.float = lambda tensor, *args, **kwargs: tensor.to(dtype)
        return self

    def __exit__(self, *exc):
        import torch

        torch.Tensor.float = self.original
        return False


class Float32IsGradingDtype(ast.NodeTransformer):
    """`torch.float32` (and `torch.float`) read as the grading dtype in a lecture cell's statement.

    The same reason as `float_is_grading_dtype`: in the student's float32 kernel,
    `torch.zeros((27, 10), dtype=torch.float32)` is the default dtype, so it must stay the default
    here; graded in float64 it would otherwise round a right answer to float32 precision.
    """

    def visit_Attribute(self, node):
        node = self.generic_visit(node)
        if (isinstance(node.ctx, ast.Load) and node.attr in ("float32", "float")
                and isinstance(node.value, ast.Name) and node.value.id == "torch"):
            call = ast.Call(ast.Attribute(ast.Name("torch", ast.Load()), "get_default_dtype", ast.Load()), [], [])
            return ast.copy_location(call, node)
        return node


def as_lecture_ran(node):
    """A statement as the student's float32 kernel ran it (see Float32IsGradingDtype)."""
    return ast.fix_missing_locations(Float32IsGradingDtype().visit(node))


def _same(value, expected) -> bool:
    import torch

    return (type(value) is torch.Tensor and value.shape == expected.shape and value.dtype == expected.dtype
            and bool(torch.equal(value, expected)))


def match_forward(exercise: dict, ns: dict, values: dict, deadline: float, limit: float) -> dict:
    """Run the student's forward cell on copies of the grader's tensors (its inputs under the student's
    names) and take each name the exercise needs for the one lecture tensor it equals. Adds the names
    to `ns` (the lecture's own tensor objects) and their d... names to the exercise's aliases."""
    import torch

    cell = exercise["forward_cell"]
    scratch = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in ns.items()}
    scratch["parameters"] = [scratch[k] for k in PARAMS]
    for student, lecture in cell.get("inputs", {}).items():
        if lecture in scratch and student not in scratch:
            scratch[student] = scratch[lecture]
    with float_is_grading_dtype():
        run_statements([cell], scratch, deadline, limit)
    found = {}
    for name in cell.get("wanted", []):
        value = scratch.get(name)
        if type(value) is not torch.Tensor:
            continue
        same = [k for k in FORWARD_ARGS if values[k].shape == value.shape and values[k].dtype == value.dtype
                and bool(torch.allclose(value, values[k], rtol=1e-7, atol=1e-12))]
        if len(same) == 1:
            found[name] = same[0]
            ns.setdefault(name, ns[same[0]])
            names = exercise.setdefault("aliases", {}).setdefault(same[0], [])
            if same[0] in exercise["expected"] and "d" + name not in names:
                names.append("d" + name)
    return found


def read_answers(ns: dict, exercise: dict, new: list[str], answers) -> dict:
    """The answers from the namespace: `dX` itself, else the variable the student's cmp line compares
    with X, else one unambiguous near-miss name (dlogits_fast, dbhprebn). Returns what was read where."""
    import torch

    expected = exercise["expected"]
    answer_names = {"d" + name for name in expected}
    used = {}
    wanted = [name for name in expected if "d" + name not in ns]
    candidates = {name: answer_candidates("d" + name, new, answer_names) for name in wanted}
    claims: dict[str, int] = {}
    for found in candidates.values():
        for var in found:
            claims[var] = claims.get(var, 0) + 1
    for name in expected:
        var = "d" + name
        if var in ns:
            answers.add(name, ns[var])
            continue
        for alt in exercise.get("aliases", {}).get(name, []):
            if alt in ns and (ns[alt] is None or isinstance(ns[alt], torch.Tensor)):
                answers.add(name, ns[alt])
                used[name] = [alt, "cmp"]
                break
        else:
            found = candidates.get(name, [])
            if len(found) == 1 and claims[found[0]] == 1:
                answers.add(name, ns[found[0]])
                used[name] = [found[0], "near"]
    return used


def run_lecture_exercise(harness, exercise: dict, cases: list[dict], answers_cls) -> None:
    """One lecture exercise on `cases`: a fresh namespace per case, answers and facts sent back.

    `harness` is the per-exercise child's grader.sandbox.inside.harness.Harness (its `inputs` and `send`).
    """
    import torch

    limit = float(exercise.get("statement_timeout", 5.0))
    for case in cases:
        started = time.perf_counter()
        deadline = time.monotonic() + float(exercise.get("case_budget", 20.0))
        answers = answers_cls(case["max_numel"])
        facts = {"errors": [], "defined": [], "zero_filled": [], "changed": [], "late": []}
        meta = {"type": "result", "exercise": exercise["id"], "case": case["name"]}
        try:
            values, extra = lecture_globals(harness.inputs(case), case, exercise.get("provided", []))
            pristine = {k: v.clone() for k, v in values.items()}
            ns = {"__name__": "__main__", "__builtins__": builtins}
            run_statements(exercise.get("prelude", []), ns, deadline, limit)  # imports and defs; failures ignored
            ns.update(extra)
            ns["parameters"] = [values[k] for k in PARAMS]
            ns.update(values)
            for student, lecture in exercise.get("forward_aliases", {}).items():
                if student not in ns and lecture in ns:  # the student's name for a lecture tensor (Y_batch)
                    ns[student] = ns[lecture]
            if exercise.get("forward_cell"):
                facts["forward_map"] = match_forward(exercise, ns, values, deadline, limit)
            before = {k: id(v) for k, v in ns.items()}
            with float_is_grading_dtype():
                run_statements(exercise["cells"], ns, deadline, limit, facts["errors"], facts["late"])
            new = [k for k, v in ns.items() if k.startswith("d") and before.get(k) != id(v)
                   and (v is None or isinstance(v, torch.Tensor))]
            facts["defined"] = sorted(new)[:100]
            facts["aliases"] = read_answers(ns, exercise, new, answers)
            if ("logit_maxes" in exercise["expected"] and "dlogit_maxes" not in ns
                    and "logit_maxes" not in facts["aliases"]
                    and isinstance(ns.get("dlogits"), torch.Tensor)
                    and not near_matches("dlogit_maxes", [k for k in new if k[1:] not in exercise["expected"]])):
                answers.add("logit_maxes", torch.zeros_like(pristine["logit_maxes"]))
                facts["zero_filled"].append("logit_maxes")
            facts["changed"] = sorted(k for k, v in pristine.items() if not _same(ns.get(k), v))[:20]
        except BaseException as err:  # noqa: BLE001 - a failure of the set-up, or student code escaping
            meta["error"] = {"message": f"the exercise's cells stopped the grader ({type(err).__name__}: {err})"[:500],
                             "traceback": ""}
        facts["errors"] = facts["errors"][:30]  # one frame's JSON stays well under the worker's cap
        facts["late"] = facts["late"][:30]
        meta["lecture"] = facts
        meta["seconds"] = time.perf_counter() - started
        harness.send_answers(meta, answers)


# ---------------------------------------------------------------------------
# Worker side: the whole notebook with nbclient

def _cell_error(cell) -> tuple[str, str]:
    """(`Name: value`, traceback) of a failed cell, from its error output."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            text = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
            tb = ANSI.sub("", "\n".join(output.get("traceback", [])))
            return text[:500], tb[-4000:]
    return "the cell failed", ""


class Watchdog:
    """The per-cell timeout: interrupt the kernel when a cell runs too long, kill it if that is not enough.

    nbclient's own timeout does not fire over the ipc transport (used because a sandbox's network
    namespace may have no loopback), so the worker keeps time itself.
    """

    def __init__(self, pid: int | None, seconds: float, grace: float = 5.0):
        import threading

        self.pid = pid
        self.fired = False
        self._timers = [threading.Timer(seconds, self._signal, (signal.SIGINT,)),
                        threading.Timer(seconds + grace, self._signal, (signal.SIGKILL,))]
        for timer in self._timers:
            timer.daemon = True
            timer.start()

    def _signal(self, number) -> None:
        self.fired = True
        if self.pid:
            try:
                os.kill(self.pid, number)
            except OSError:
                pass

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


def run_notebook(plan: dict, channel_fd: int) -> None:
    """Execute the notebook top to bottom; one frame per cell on the channel, then `done`."""
    from grader.sandbox.inside import channel

    def send(meta: dict) -> None:
        channel.send(channel_fd, meta)

    try:
        import nbformat
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        nb = nbformat.read(plan["notebook"], as_version=4)
        code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        for _, cell in code:
            cell.outputs, cell.execution_count = [], None
        send({"type": "execution_start", "cells": len(code)})
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(plan["cwd"], "kernel"))
        client = NotebookClient(nb, km=km, timeout=plan["cell_timeout"] + 10, startup_timeout=plan["startup_timeout"],
                                allow_errors=False, shutdown_kernel="immediate",
                                resources={"metadata": {"path": plan["cwd"]}})
        with client.setup_kernel():
            send({"type": "kernel_ready"})
            pid = getattr(getattr(km, "provisioner", None), "pid", None)
            for index, cell in code:
                send({"type": "cell_start", "cell": index + 1})
                started = time.perf_counter()
                result = {"type": "cell_end", "cell": index + 1, "status": "ok"}
                watchdog = Watchdog(pid, plan["cell_timeout"])
                try:
                    client.execute_cell(cell, index)
                except (CellTimeoutError, CellExecutionError, DeadKernelError) as err:
                    if watchdog.fired or isinstance(err, CellTimeoutError):
                        result.update(status="timeout", error=f"did not finish within {plan['cell_timeout']:g} s")
                    elif isinstance(err, DeadKernelError):
                        result.update(status="error", error="the kernel died; often: out of memory or CPU time")
                    else:
                        error, tb = _cell_error(cell)
                        result.update(status="failed", error=error, traceback=tb)
                finally:
                    watchdog.cancel()
                result["seconds"] = time.perf_counter() - started
                send(result)
                if result["status"] != "ok":
                    break
    except Exception as err:  # noqa: BLE001 - a notebook nbformat cannot read, a kernel that does not start
        send({"type": "execution_error", "message": f"{type(err).__name__}: {ANSI.sub('', str(err))[:500]}"})
    send({"type": "done"})


# ---------------------------------------------------------------------------
# Grading process side

KERNEL_STARTUP = 90.0
MARGIN = 30.0


def execute_notebook(data: bytes, config, level: str, cell_timeout: float):
    """Run a notebook in a sandboxed worker; the report's NotebookExecution."""
    from grader.report import NotebookExecution
    from grader.sandbox.handle import STARTUP_TIMEOUT, WorkerProcess
    from grader.sandbox.levels import Mounts

    t0 = time.monotonic()
    outcome = NotebookExecution(status="ok", cell_timeout_s=cell_timeout)
    with tempfile.TemporaryDirectory(prefix="grader-exec-") as tmp:
        root = Path(tmp)
        mounts = Mounts(inputs=root / "inputs", submission=root / "submission", cwd=root / "cwd")
        for folder in (mounts.inputs, mounts.submission, mounts.cwd):
            folder.mkdir()
        notebook = mounts.inputs / "notebook.ipynb"
        notebook.write_bytes(data)
        plan_path = mounts.inputs / "plan.json"
        plan_path.write_text(json.dumps({
            "mode": "execute", "dtype": config.dtype, "submission": str(mounts.submission),
            "inputs": str(mounts.inputs), "cwd": str(mounts.cwd), "notebook": str(notebook),
            "cell_timeout": cell_timeout, "startup_timeout": KERNEL_STARTUP}))
        worker = WorkerProcess(level, config, mounts, plan_path)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        current = None
        try:
            while True:
                meta, blob = worker.next_frame(deadline)
                if meta == "timeout":
                    outcome.status = "timeout"
                    outcome.failed_cell = current
                    outcome.message = (f"cell {current} did not finish within {cell_timeout:g} s" if current
                                       else "the notebook's kernel did not start in time")
                    break
                if meta in ("eof", "protocol"):
                    outcome.status = "error"
                    outcome.failed_cell = current
                    outcome.message = f"the notebook's process stopped: it {worker.exit_description()}"
                    break
                kind = meta.get("type")
                if kind == "hello":
                    worker.go()
                    deadline = time.monotonic() + KERNEL_STARTUP + MARGIN
                elif kind == "execution_start":
                    outcome.cells_total = int(meta.get("cells", 0))
                elif kind == "kernel_ready":
                    deadline = time.monotonic() + cell_timeout + MARGIN
                elif kind == "cell_start":
                    current = int(meta.get("cell", 0))
                    deadline = time.monotonic() + cell_timeout + MARGIN
                elif kind == "cell_end":
                    status = str(meta.get("status"))
                    if status == "ok":
                        outcome.cells_run += 1
                    else:
                        outcome.status = status if status in ("failed", "timeout", "error") else "error"
                        outcome.failed_cell = int(meta.get("cell", 0))
                        outcome.error = str(meta.get("error", ""))[:500] or None
                        outcome.traceback = str(meta.get("traceback", ""))[-4000:] or None
                        outcome.message = f"cell {outcome.failed_cell} {_verb(outcome.status)}: {outcome.error}"
                    current = None
                    deadline = time.monotonic() + cell_timeout + MARGIN
                elif kind == "execution_error":
                    outcome.status = "error"
                    outcome.error = str(meta.get("message", ""))[:500]
                    outcome.message = f"the notebook could not be run: {outcome.error}"
                elif kind == "done":
                    break
        finally:
            worker.kill()
    if outcome.status == "ok":
        outcome.message = f"all {outcome.cells_total} code cells ran without an error"
    outcome.seconds = round(time.monotonic() - t0, 3)
    return outcome


def _verb(status: str) -> str:
    return {"failed": "raised an error", "timeout": "timed out", "error": "stopped the kernel"}.get(status, status)
