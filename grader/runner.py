"""The grading process's side of the boundary: start workers, read answers, enforce time.

One sandboxed worker runs every exercise of a submission, each in a child
process of its own; the worker enforces each exercise's timeout and reports
children that crash. Hidden cases' inputs are written only when the worker
has finished every public case and asks for them (see grader.worker), and
removed before any fresh worker starts. This side is the backstop: when the
worker itself stops answering (past an exercise's timeout plus a margin) or
dies, its whole process group is killed, the exercise in progress is marked,
and a fresh worker takes the exercises that had not been answered yet.
Frames are read with caps on their size and on the total, and only those of
the exercise in progress are kept.
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
from grader.exercises import EXERCISES, PARAMS
from grader.sandbox import Mounts, make_readable, stage_package, start_worker

STARTUP_TIMEOUT = 120.0  # importing torch on a loaded machine
GRACE = 5.0              # between two exercises, or after the last one
MARGIN = 5.0             # past an exercise's timeout before the worker itself counts as hung
MAX_FINDINGS = 20        # runtime integrity reports kept per exercise


@dataclass
class ExerciseRun:
    """What came back for one exercise: per-case frames, or an exercise-level failure."""

    results: dict[str, tuple[dict, bytes]] = field(default_factory=dict)
    error: dict | None = None  # {"status", "message", "traceback"?}
    seconds: float = 0.0
    findings: list[dict] = field(default_factory=list)  # runtime integrity reports: pattern, file, line, message


@dataclass
class RunOutcome:
    exercises: dict[str, ExerciseRun]
    stdout: str = ""
    stderr: str = ""
    output_dropped: int = 0
    workers_started: int = 0


def _text(value, limit: int) -> str:
    return str(value)[:limit] if value is not None else ""


def clean_result(meta: dict) -> dict:
    """A result frame reduced to the fields and types scoring reads: the worker side is not trusted."""
    out = {"type": "result", "case": _text(meta.get("case"), 100)}
    notes = meta.get("notes")
    if isinstance(notes, dict):
        out["notes"] = {}
        for key, note in list(notes.items())[:200]:
            if isinstance(note, dict):
                clean = {"status": _text(note.get("status"), 40), "message": _text(note.get("message"), 300)}
                shape = note.get("got_shape")
                if isinstance(shape, list) and all(type(d) is int for d in shape[:8]):
                    clean["got_shape"] = shape[:8]
                out["notes"][_text(key, 100)] = clean
    if isinstance(meta.get("error"), dict):
        out["error"] = {"message": _text(meta["error"].get("message"), 500),
                        "traceback": _text(meta["error"].get("traceback"), 4000)}
    if isinstance(meta.get("trajectory"), dict):
        out["trajectory"] = {"status": _text(meta["trajectory"].get("status"), 40),
                             "message": _text(meta["trajectory"].get("message"), 300)}
    if isinstance(meta.get("seconds"), (int, float)):
        out["seconds"] = float(meta["seconds"])
    if isinstance(meta.get("lecture"), dict):
        out["lecture"] = meta["lecture"]  # the lecture format's facts, read defensively by grader.lecture
    return out


class WorkerProcess:
    """One worker: started early, released with `go()`, read frame by frame with deadlines."""

    def __init__(self, level: str, config: GradingConfig, mounts: Mounts, plan_path: Path,
                 max_total: int = 1 << 30):
        channel_r, channel_w = os.pipe()
        go_r, self._go_w = os.pipe()
        args = [str(plan_path), "--channel", str(channel_w), "--go", str(go_r)]
        try:
            self.proc = start_worker(level, config.limits, mounts, args, (channel_w, go_r))
        except BaseException:
            os.close(channel_r)
            os.close(self._go_w)
            raise
        finally:
            os.close(channel_w)
            os.close(go_r)
        self.stdout = CappedStream(self.proc.stdout, config.limits.output_bytes)
        self.stderr = CappedStream(self.proc.stderr, config.limits.output_bytes)
        self.memory_mb = config.limits.memory_mb
        self.frames: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(channel_r, max_total), daemon=True)
        self._reader.start()

    def _read(self, fd: int, max_total: int) -> None:
        reader = FrameReader(fd, max_total=max_total)
        try:
            while (frame := reader.read()) is not None:
                self.frames.put(frame)
            self.frames.put(("eof", None))
        except (ProtocolError, OSError) as err:
            self.frames.put(("protocol", str(err)))
        finally:
            os.close(fd)

    def go(self) -> None:
        """Release the worker: once to start, once more when the hidden cases' inputs are written."""
        if self._go_w is None:
            return
        try:
            os.write(self._go_w, b"g")
        except OSError:
            pass  # the worker already died; reading its channel will say so

    def next_frame(self, deadline: float):
        """(meta, blob), ("eof", None), ("protocol", msg) or ("timeout", None)."""
        try:
            return self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return ("timeout", None)

    def kill(self) -> None:
        """Kill the whole process group (under bwrap, the sandbox dies with it)."""
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
            hint = (f" (often: out of memory, limit {self.memory_mb} MB, or CPU time)"
                    if name in ("SIGKILL", "SIGXCPU", "SIGSEGV", "SIGABRT") else "")
            return f"was killed by {name}{hint}"
        return f"exited with code {code}"


class SubmissionRunner:
    """Runs a submission's exercises in workers until each has an answer or a failure."""

    def __init__(self, config: GradingConfig, level: str, timeout: float, workdir: Path, submission: Path):
        self.config = config
        self.level = level
        self.timeout = timeout
        self.workdir = workdir
        for folder in ("inputs", "cwd"):
            (workdir / folder).mkdir(parents=True, exist_ok=True)
        self.mounts = Mounts(inputs=workdir / "inputs", submission=submission, cwd=workdir / "cwd",
                             lib=stage_package(workdir / "lib"))
        self._early: WorkerProcess | None = None
        self._plans = 0
        self._hidden: list[tuple[Path, dict]] = []  # written only when a worker has finished the public cases
        self.extra: dict[str, dict] = {}  # per exercise: more plan fields (the lecture notebook's cells)

    def start_early(self) -> None:
        """Start the first worker now, so its torch import overlaps the grader's own work."""
        self._early = WorkerProcess(self.level, self.config, self.mounts, self.mounts.inputs / "plan-1.json")

    def write_inputs(self, cases) -> list[dict]:
        """Case tensors as safetensors (a format that cannot carry code) plus what the worker needs."""
        from safetensors.torch import save_file  # imports torch: only once the early worker runs

        described = []
        for case in cases:
            file = f"case-{case.spec.name}.safetensors"
            if case.spec.hidden:
                self._hidden.append((self.mounts.inputs / file, case.inputs))
            else:
                save_file(case.inputs, str(self.mounts.inputs / file))
            largest = max(t.numel() for t in case.inputs.values())
            described.append({"name": case.spec.name, "file": file, "ints": case.ints, "hidden": case.spec.hidden,
                              "max_numel": 16 * largest + 4096})
        make_readable(self.mounts.inputs)
        return described

    def _write_hidden(self) -> None:
        from safetensors.torch import save_file

        for path, tensors in self._hidden:
            save_file(tensors, str(path))
        make_readable(self.mounts.inputs)

    def _remove_hidden(self) -> None:
        """Before a fresh worker starts: its public-case children must not find hidden inputs."""
        for path, _ in self._hidden:
            path.unlink(missing_ok=True)

    def _plan(self, exercise_ids: list[str], cases: list[dict]) -> Path:
        self._plans += 1
        path = self.mounts.inputs / f"plan-{self._plans}.json"
        exercises = []
        for ex_id in exercise_ids:
            ex = EXERCISES[ex_id]
            exercises.append({"id": ex.id, "module": ex.module, "function": ex.function,
                              "checks": list(ex.checks), "gradient_checks": list(ex.gradient_checks),
                              "tensor_args": list(ex.tensor_args), "int_args": list(ex.int_args),
                              "returns_dict": ex.returns_dict, "trajectory": ex.id == "train",
                              **self.extra.get(ex_id, {})})
        plan = {"dtype": self.config.dtype, "submission": str(self.mounts.submission),
                "inputs": str(self.mounts.inputs), "cwd": str(self.mounts.cwd), "cases": cases,
                "exercises": exercises, "train": self.config.train.model_dump(),
                "timeout": self.timeout, "memory_mb": self.config.limits.memory_mb,
                "file_size_mb": self.config.limits.file_size_mb}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan))
        tmp.chmod(0o644)
        tmp.rename(path)
        return path

    def _budget(self, exercise_ids: list[str], cases: list[dict]) -> int:
        """The most bytes honest answers could take (16x every input's size), with room to spare."""
        keys = sum(len(EXERCISES[ex].gradient_checks) for ex in exercise_ids)
        keys += self.config.train.steps * len(PARAMS) if "train" in exercise_ids else 0
        per_case = max((c["max_numel"] for c in cases), default=0) * 8
        return 2 * (keys + 1) * len(cases) * per_case + (64 << 20)

    def run(self, exercise_ids: list[str], cases, extra: dict[str, dict] | None = None) -> RunOutcome:
        self.extra = extra or {}
        case_info = self.write_inputs(cases)
        outcome = RunOutcome(exercises={ex: ExerciseRun() for ex in exercise_ids})
        pending = list(exercise_ids)
        stdout, stderr = [], []
        while pending:
            plan_path = self._plan(pending, case_info)
            if self._early is not None and self._plans == 1:
                worker, self._early = self._early, None
            else:
                self._remove_hidden()
                worker = WorkerProcess(self.level, self.config, self.mounts, plan_path,
                                       max_total=self._budget(pending, case_info))
            outcome.workers_started += 1
            try:
                answered = self._drive(worker, pending, outcome)
            finally:
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
                run.seconds += time.monotonic() - started
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
                    nxt = next((ex for ex in pending if ex not in settled), None)
                    if nxt is not None:
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
                elif not hello:
                    settled.update(pending)  # the worker cannot even start: do not retry forever
                    for ex in pending:
                        outcome.exercises[ex].error = {"status": "error",
                                                       "message": f"the grading worker did not start: it "
                                                                  f"{worker.exit_description()}"}
                else:
                    # Died between exercises: charge the next one, so retries end.
                    nxt = next((ex for ex in pending if ex not in settled), None)
                    if nxt is not None:
                        outcome.exercises[nxt].error = {"status": "crashed", "message": message}
                        settled.add(nxt)
                return settled
            kind = meta.get("type")
            run = outcome.exercises.get(current) if current is not None else None
            if kind == "hello" and not hello:
                hello = True
                worker.go()
                deadline = time.monotonic() + GRACE + STARTUP_TIMEOUT / 4
            elif kind == "exercise_start" and meta.get("exercise") in pending and current is None:
                current = meta["exercise"]
                started = time.monotonic()
                deadline = started + self.timeout + MARGIN
            elif kind == "need_hidden" and current is None:
                self._write_hidden()
                worker.go()
                deadline = time.monotonic() + GRACE
            elif kind == "done":
                return settled
            elif run is None or meta.get("exercise") != current:
                continue  # out of order, or not for the exercise in progress
            elif kind == "exercise_error":
                run.error = {k: str(meta.get(k, ""))[:4000] for k in ("status", "message", "traceback")}
            elif kind == "result":
                run.results[str(meta.get("case"))] = (clean_result(meta), blob)
            elif kind == "integrity" and len(run.findings) < MAX_FINDINGS and isinstance(meta.get("pattern"), str) \
                    and isinstance(meta.get("message"), str):
                line, file = meta.get("line"), meta.get("file")
                run.findings.append({"pattern": meta["pattern"][:100], "message": meta["message"][:500],
                                     "file": file[:200] if isinstance(file, str) and file else None,
                                     "line": line if type(line) is int else None})
            elif kind == "exercise_end":
                run.seconds += time.monotonic() - started
                settled.add(current)
                current = None
                deadline = time.monotonic() + GRACE
