"""The grading process's side of the boundary: start workers, read answers, enforce time.

One worker runs every exercise of a submission in turn. When an exercise
hangs past its timeout, or the worker dies in the middle of one, the whole
process group is killed, that exercise is marked, and a fresh worker takes
the exercises that had not been answered yet.
"""

import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grader.capture import CappedStream
from grader.channel import FrameReader, ProtocolError
from grader.config import GradingConfig
from grader.exercises import EXERCISES
from grader.sandbox import Mounts, start_worker

STARTUP_TIMEOUT = 120.0  # importing torch on a loaded machine
GRACE = 5.0              # between two exercises, or after the last one


@dataclass
class ExerciseRun:
    """What came back for one exercise: per-case frames, or an exercise-level failure."""

    results: dict[str, tuple[dict, bytes]] = field(default_factory=dict)
    error: dict | None = None  # {"status", "message", "traceback"?}
    seconds: float = 0.0


@dataclass
class RunOutcome:
    exercises: dict[str, ExerciseRun]
    stdout: str = ""
    stderr: str = ""
    output_dropped: int = 0
    workers_started: int = 0


class WorkerProcess:
    """One worker: started early, released with `go()`, read frame by frame with deadlines."""

    def __init__(self, level: str, config: GradingConfig, mounts: Mounts, plan_path: Path):
        channel_r, channel_w = os.pipe()
        go_r, self._go_w = os.pipe()
        args = [str(plan_path), "--channel", str(channel_w), "--go", str(go_r)]
        try:
            self.proc = start_worker(level, config.limits, mounts, args, (channel_w, go_r))
        finally:
            os.close(channel_w)
            os.close(go_r)
        self.stdout = CappedStream(self.proc.stdout, config.limits.output_bytes)
        self.stderr = CappedStream(self.proc.stderr, config.limits.output_bytes)
        self.frames: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(channel_r,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        reader = FrameReader(fd)
        try:
            while (frame := reader.read()) is not None:
                self.frames.put(frame)
            self.frames.put(("eof", None))
        except (ProtocolError, OSError) as err:
            self.frames.put(("protocol", str(err)))
        finally:
            os.close(fd)

    def go(self) -> None:
        try:
            os.write(self._go_w, b"g")
        except OSError:
            pass  # the worker already died; reading its channel will say so
        os.close(self._go_w)
        self._go_w = None

    def next_frame(self, deadline: float):
        """(meta, blob), ("eof", None), ("protocol", msg) or ("timeout", None)."""
        try:
            return self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return ("timeout", None)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self._go_w is not None:
            os.close(self._go_w)
            self._go_w = None
        self.stdout.join()
        self.stderr.join()

    def exit_description(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (often: out of memory or CPU time)" if name in ("SIGKILL", "SIGXCPU", "SIGSEGV") else ""
            return f"was killed by {name}{hint}"
        return f"exited with code {code}"


class SubmissionRunner:
    """Runs a submission's exercises in workers until each has an answer or a failure."""

    def __init__(self, config: GradingConfig, level: str, timeout: float, workdir: Path, submission: Path):
        self.config = config
        self.level = level
        self.timeout = timeout
        self.workdir = workdir
        self.mounts = Mounts(inputs=workdir / "inputs", submission=submission, cwd=workdir / "cwd")
        self.mounts.inputs.mkdir(parents=True, exist_ok=True)
        self.mounts.cwd.mkdir(parents=True, exist_ok=True)
        self._early: WorkerProcess | None = None
        self._plans = 0

    def start_early(self) -> None:
        """Start the first worker now, so its torch import overlaps the grader's own work."""
        self._early = WorkerProcess(self.level, self.config, self.mounts, self.mounts.inputs / "plan-1.json")

    def write_inputs(self, cases) -> list[dict]:
        """Case tensors as safetensors (a format that cannot carry code) plus what the worker needs."""
        from safetensors.torch import save_file  # imports torch: only once the early worker runs

        described = []
        for case in cases:
            file = f"case-{case.spec.name}.safetensors"
            save_file(case.inputs, str(self.mounts.inputs / file))
            largest = max(t.numel() for t in case.inputs.values())
            described.append({"name": case.spec.name, "file": file, "ints": case.ints,
                              "max_numel": 16 * largest + 4096})
        return described

    def _plan(self, exercise_ids: list[str], cases: list[dict]) -> Path:
        self._plans += 1
        path = self.mounts.inputs / f"plan-{self._plans}.json"
        exercises = []
        for ex_id in exercise_ids:
            ex = EXERCISES[ex_id]
            exercises.append({"id": ex.id, "module": ex.module, "function": ex.function,
                              "checks": list(ex.checks), "gradient_checks": list(ex.gradient_checks),
                              "tensor_args": list(ex.tensor_args), "int_args": list(ex.int_args),
                              "returns_dict": ex.returns_dict, "trajectory": ex.id == "train"})
        plan = {"dtype": self.config.dtype, "submission": str(self.mounts.submission),
                "inputs": str(self.mounts.inputs), "cwd": str(self.mounts.cwd), "cases": cases,
                "exercises": exercises, "train": self.config.train.model_dump()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan))
        tmp.rename(path)
        return path

    def run(self, exercise_ids: list[str], cases) -> RunOutcome:
        case_info = self.write_inputs(cases)
        outcome = RunOutcome(exercises={ex: ExerciseRun() for ex in exercise_ids})
        pending = list(exercise_ids)
        stdout, stderr = [], []
        while pending:
            plan_path = self._plan(pending, case_info)
            if self._early is not None and self._plans == 1:
                worker, self._early = self._early, None
            else:
                worker = WorkerProcess(self.level, self.config, self.mounts, plan_path)
            outcome.workers_started += 1
            answered = self._drive(worker, pending, outcome)
            worker.kill()
            stdout.append(worker.stdout.text())
            stderr.append(worker.stderr.text())
            outcome.output_dropped += worker.stdout.dropped + worker.stderr.dropped
            pending = [ex for ex in pending if ex not in answered]
        if self._early is not None:  # nothing to run: release the early worker
            self._early.kill()
            self._early = None
        outcome.stdout = "".join(stdout)
        outcome.stderr = "".join(stderr)
        return outcome

    def _drive(self, worker: WorkerProcess, pending: list[str], outcome: RunOutcome) -> set[str]:
        """Feed one worker; returns the exercises it settled (answered or failed)."""
        settled: set[str] = set()
        current: str | None = None
        started = 0.0
        deadline = time.monotonic() + STARTUP_TIMEOUT
        hello = False

        def fail_current(status: str, message: str) -> None:
            if current is not None:
                run = outcome.exercises[current]
                run.error = {"status": status, "message": message}
                run.seconds = time.monotonic() - started
                settled.add(current)

        while True:
            meta, blob = worker.next_frame(deadline)
            if meta == "timeout":
                if current is not None:
                    fail_current("timeout", f"did not finish within {self.timeout:g} s "
                                            "(an infinite loop, or far too slow)")
                elif not hello:
                    settled.update(pending)  # the worker cannot even start: do not retry forever
                    for ex in pending:
                        outcome.exercises[ex].error = {"status": "error",
                                                       "message": "the grading worker did not start"}
                else:
                    # Hung between exercises: charge the next one that has not been answered.
                    nxt = next(ex for ex in pending if ex not in settled)
                    outcome.exercises[nxt].error = {"status": "timeout",
                                                    "message": "the worker stopped responding"}
                    settled.add(nxt)
                return settled
            if meta in ("eof", "protocol"):
                if meta == "protocol":
                    message = f"sent a malformed answer: {blob}"
                else:
                    message = f"stopped the grading worker: it {worker.exit_description()}"
                if current is not None:
                    fail_current("crashed", message)
                elif not settled:
                    # Died before answering anything: charge the next exercise, so retries end.
                    nxt = next((ex for ex in pending if ex not in settled), None)
                    if nxt is not None:
                        outcome.exercises[nxt].error = {"status": "crashed", "message": message}
                        settled.add(nxt)
                return settled
            kind = meta.get("type")
            if kind == "hello" and not hello:
                hello = True
                worker.go()
                deadline = time.monotonic() + GRACE + STARTUP_TIMEOUT / 4
            elif kind == "exercise_start" and meta.get("exercise") in pending and current is None:
                current = meta["exercise"]
                started = time.monotonic()
                deadline = started + self.timeout
            elif kind == "exercise_error" and meta.get("exercise") == current:
                outcome.exercises[current].error = {k: str(meta.get(k, ""))[:4000]
                                                    for k in ("status", "message", "traceback")}
            elif kind == "result" and meta.get("exercise") == current:
                outcome.exercises[current].results[str(meta.get("case"))] = (meta, blob)
            elif kind == "exercise_end" and meta.get("exercise") == current:
                outcome.exercises[current].seconds = time.monotonic() - started
                settled.add(current)
                current = None
                deadline = time.monotonic() + GRACE
            elif kind == "done":
                return settled
            # Anything else (a frame forged by student code, out of order) is ignored.
