"""The grading process's side of the boundary: start workers, read answers, enforce time.

One sandboxed worker runs every exercise of a submission, each in a child
process of its own; the worker enforces each exercise's timeout and reports
children that crash. The worker is a process of its own (WorkerProcess) or,
in batch grading, a session forked by a pre-warmed fork server
(grader.sandbox.slot). Hidden cases' inputs never touch the disk: they go down the
worker's go pipe, as safetensors bytes, only when it has finished every
public case and asks for them (see grader.sandbox.inside.worker). This side is the
backstop: when the worker itself stops answering (past an exercise's
timeout plus a margin) or dies, its whole process group is killed, the
exercise in progress is marked, and a fresh worker takes the exercises that
had not been answered yet.
Frames are read with caps on their size and on the total, and only those of
the exercise in progress are kept.
"""

import json
import os
import queue
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grader.sandbox.capture import CappedStream
from grader.sandbox.inside.channel import FrameReader, ProtocolError, frame_bytes
from grader.config import GradingConfig
from grader.course.spec import EXERCISES, PARAMS
from grader.safe_text import clean_tree, valid
from grader.sandbox.levels import Mounts, kill_group, make_readable, stage_package, start_worker

STARTUP_TIMEOUT = 120.0  # importing torch on a loaded machine
GRACE = 5.0              # between two exercises, or after the last one
MARGIN = 5.0             # past an exercise's timeout before the worker itself counts as hung
MAX_FINDINGS = 20        # runtime integrity reports kept per exercise
PIPE_CHUNK = 1 << 16     # one write to the go pipe, so a slow reader never blocks the grader


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
    return valid(str(value)[:limit]) if value is not None else ""


_SERIALIZED: dict[int, tuple[dict, bytes]] = {}


def serialized(tensors: dict) -> bytes:
    """A case's inputs as safetensors bytes, made once per run (batch grading sends them for every submission)."""
    from safetensors.torch import save

    entry = _SERIALIZED.get(id(tensors))
    if entry is None or entry[0] is not tensors:
        if len(_SERIALIZED) > 256:
            _SERIALIZED.clear()
        entry = _SERIALIZED[id(tensors)] = (tensors, save(tensors))
    return entry[1]


def clean_result(meta: dict, hidden: bool = False, expected: set[str] = frozenset()) -> dict:
    """A result frame reduced to the fields and types scoring reads: the worker side is not trusted.

    A hidden case's result keeps only its verdict-bearing fields, from fixed sets (grader.sandbox.inside.worker reduces
    it the same way first): nothing free-form, no shapes, no timing.
    """
    if hidden:
        from grader.sandbox.inside.worker import NOTE_STATUSES, TRAJECTORY_STATUSES, _known

        notes = meta.get("notes") if isinstance(meta.get("notes"), dict) else {}
        out = {"type": "result", "case": _text(meta.get("case"), 100),
               "notes": {_text(k, 100): {"status": _known(v.get("status"), NOTE_STATUSES, "wrong_type"),
                                         "message": ""}
                         for k, v in list(notes.items())[:200] if isinstance(v, dict) and k in expected}}
        if isinstance(meta.get("error"), dict):
            out["error"] = {"message": "raised an exception on a hidden case", "traceback": ""}
        if isinstance(meta.get("trajectory"), dict):
            status = meta["trajectory"].get("status")
            out["trajectory"] = {"status": _known(status, TRAJECTORY_STATUSES, "failed"), "message": ""}
        return out
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
        out["lecture"] = meta["lecture"]  # the lecture format's facts, read defensively by grader.scoring.lecture
    return out


def line_counts(folder: Path) -> dict[str, int]:
    """The submission's Python files (relative paths) and their line counts: what a finding may name."""
    counts = {}
    for path in sorted(folder.rglob("*.py"))[:1000]:
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as fh:
                counts[str(path.relative_to(folder))] = sum(1 for _ in fh)
    return counts


# Case tensors that are answers of another exercise (autograd's gradients of atomic's hpreact and emb, the
# inputs of batchnorm and embedding): never in an input file, where atomic's child could read them.
PRIVATE_INPUTS = ("dhpreact", "demb")
_SPLIT: dict[int, tuple[dict, dict, dict]] = {}


def split_inputs(tensors: dict) -> tuple[dict, dict]:
    """(what may be written to the input file, what goes down the pipe), made once per case."""
    entry = _SPLIT.get(id(tensors))
    if entry is None or entry[0] is not tensors:
        if len(_SPLIT) > 256:
            _SPLIT.clear()
        entry = _SPLIT[id(tensors)] = (tensors, {k: v for k, v in tensors.items() if k not in PRIVATE_INPUTS},
                                       {k: v for k, v in tensors.items() if k in PRIVATE_INPUTS})
    return entry[1], entry[2]


def clean_finding(meta: dict, ex_id: str, files: dict[str, int], hidden: bool) -> dict | None:
    """A runtime integrity report checked against what it can be: a file of the submission, a line in it.

    In the hidden phase it is only a flag (file, line and text are fixed), whatever the worker sent.
    """
    if hidden:
        from grader.sandbox.inside.worker import HIDDEN_ATTEMPT

        return {"pattern": HIDDEN_ATTEMPT, "file": None, "line": None,
                "message": (f"{HIDDEN_ATTEMPT} is not allowed: PyTorch's automatic differentiation computes the "
                            "answers, so every gradient must be written out by hand")}
    if not isinstance(meta.get("pattern"), str) or not isinstance(meta.get("message"), str):
        return None
    file, line = meta.get("file"), meta.get("line")
    file = file if isinstance(file, str) and file in files else None
    lines = files.get(file or EXERCISES[ex_id].file, 0)
    line = line if type(line) is int and 1 <= line <= lines else None
    return {"pattern": meta["pattern"][:100], "message": meta["message"][:500], "file": file, "line": line}


class WorkerChannel:
    """The grading side of one worker's pipes: frames in, the go signal (and hidden inputs) out, output captured."""

    def __init__(self, channel_r: int, go_w: int | None, stdout, stderr, output_bytes: int, max_total: int):
        self._go_w = go_w
        self.stdout = CappedStream(stdout, output_bytes)
        self.stderr = CappedStream(stderr, output_bytes)
        self.frames: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(channel_r, max_total), daemon=True)
        self._reader.start()

    def _read(self, fd: int, max_total: int) -> None:
        reader = FrameReader(fd, max_total=max_total)
        try:
            while (frame := reader.read()) is not None:
                self.frames.put((clean_tree(frame[0]), frame[1]))  # strings valid Unicode from here on
            self.frames.put(("eof", None))
        except (ProtocolError, OSError, RecursionError) as err:
            self.frames.put(("protocol", str(err)))
        finally:
            os.close(fd)

    def go(self, inputs: list[tuple[str, bytes]] = ()) -> None:
        """Release the worker, with case tensors that never touch the disk: once to start (the public cases'
        private part), once more with the hidden cases' inputs."""
        if self._go_w is None:
            return
        out = bytearray(b"g")
        for file, blob in inputs:
            out += frame_bytes({"type": "inputs", "file": file}, blob)
        data = bytes(out + frame_bytes({"type": "end"}))
        _write_before(self._go_w, data, time.monotonic() + GRACE + len(data) / 20e6)  # 20 MB/s at worst

    def next_frame(self, deadline: float):
        """(meta, blob), ("eof", None), ("protocol", msg) or ("timeout", None)."""
        try:
            return self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return ("timeout", None)

    def _close(self) -> None:
        if self._go_w is not None:
            os.close(self._go_w)
            self._go_w = None
        self.stdout.join()
        self.stderr.join()


def _write_before(fd: int, data: bytes, deadline: float) -> None:
    """Write all of `data` unless the worker stops reading (or died): then give up quietly, it will be noticed."""
    view = memoryview(data)
    try:
        while view:
            if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
                return
            view = view[os.write(fd, view[:PIPE_CHUNK]):]
    except OSError:
        pass


def describe_exit(code: int | None, memory_mb: int) -> str:
    """How a worker ended, from its exit code (negative: a signal), for the report."""
    if code is None:
        return "stopped answering"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = (f" (often: out of memory, limit {memory_mb} MB, or CPU time)"
                if name in ("SIGKILL", "SIGXCPU", "SIGSEGV", "SIGABRT") else "")
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


class WorkerProcess(WorkerChannel):
    """One worker process of its own: started early, released with `go()`, read frame by frame with deadlines."""

    def __init__(self, level: str, config: GradingConfig, mounts: Mounts, plan_path: Path,
                 max_total: int = 1 << 30):
        channel_r, channel_w = os.pipe()
        go_r, go_w = os.pipe()
        args = [str(plan_path), "--channel", str(channel_w), "--go", str(go_r)]
        try:
            self.proc = start_worker(level, config.limits, mounts, args, (channel_w, go_r))
        except BaseException:
            os.close(channel_r)
            os.close(go_w)
            raise
        finally:
            os.close(channel_w)
            os.close(go_r)
        os.set_blocking(go_w, False)
        self.memory_mb = config.limits.memory_mb
        super().__init__(channel_r, go_w, self.proc.stdout, self.proc.stderr, config.limits.output_bytes, max_total)

    def kill(self) -> None:
        """Kill the whole process group (under bwrap, the sandbox dies with it)."""
        kill_group(self.proc)
        self._close()

    def exit_description(self) -> str:
        try:
            return describe_exit(self.proc.wait(timeout=2), self.memory_mb)
        except subprocess.TimeoutExpired:
            return describe_exit(None, self.memory_mb)


class SubmissionRunner:
    """Runs a submission's exercises in workers until each has an answer or a failure.

    Workers are processes of their own, or, with `server` (batch grading), sessions forked by a
    pre-warmed fork server whose folders (`server.mounts`) hold one submission at a time.
    """

    def __init__(self, config: GradingConfig, level: str, timeout: float, workdir: Path, submission: Path,
                 server=None):
        self.config = config
        self.level = level
        self.timeout = timeout
        self.workdir = workdir
        self.server = server
        if server is not None:
            self.mounts = server.mounts
            assert submission == self.mounts.submission, "stage the submission into the server's workspace"
        else:
            for folder in ("inputs", "cwd"):
                (workdir / folder).mkdir(parents=True, exist_ok=True)
            self.mounts = Mounts(inputs=workdir / "inputs", submission=submission, cwd=workdir / "cwd",
                                 lib=stage_package(workdir / "lib"))
        self._early = None
        self._plans = 0
        self._hidden: list[tuple[str, dict]] = []  # sent down the go pipe once the public cases are done
        self._hidden_names: set[str] = set()
        self._private: list[tuple[str, dict]] = []  # public cases' private part: down the go pipe at the start
        self.extra: dict[str, dict] = {}  # per exercise: more plan fields (the lecture notebook's cells)

    def _worker(self, plan_path: Path, max_total: int = 1 << 30):
        if self.server is not None:
            return self.server.session(plan_path, max_total)
        return WorkerProcess(self.level, self.config, self.mounts, plan_path, max_total=max_total)

    def start_early(self) -> None:
        """Start the first worker now, so its torch import overlaps the grader's own work.

        Not with a fork server: a session starts in milliseconds, and the server reads the plan
        (to share the public inputs with every session) once it is written.
        """
        if self.server is None:
            self._early = self._worker(self.mounts.inputs / "plan-1.json")

    def write_inputs(self, cases) -> list[dict]:
        """Public case tensors as safetensors (a format that cannot carry code) plus what the worker needs.

        Hidden cases' inputs are never written to disk: they go down the go pipe once the worker has
        finished every public case (see `_drive`).
        """
        from safetensors.torch import save_file  # imports torch: only once the early worker runs

        written = self.server.written if self.server is not None else {}
        described = []
        for case in cases:
            file = f"case-{case.spec.name}.safetensors"
            if case.spec.hidden:
                self._hidden.append((file, case.inputs))
                self._hidden_names.add(case.spec.name)
            else:
                public, private = split_inputs(case.inputs)
                if private:
                    self._private.append((file, private))
                if written.get(file) is not case.inputs:  # a fork server's folder keeps the batch's public inputs
                    save_file(public, str(self.mounts.inputs / file))
                    written[file] = case.inputs
            largest = max(t.numel() for t in case.inputs.values())
            described.append({"name": case.spec.name, "file": file, "ints": case.ints, "hidden": case.spec.hidden,
                              "max_numel": 16 * largest + 4096})
        make_readable(self.mounts.inputs)
        return described

    def _expected(self, ex_id: str) -> set[str]:
        """The answer keys exercise `ex_id` can send back (a hidden case's result keeps no other)."""
        from grader.sandbox.inside.worker import expected_keys

        ex = EXERCISES[ex_id]
        return expected_keys({"gradient_checks": ex.gradient_checks, "trajectory": ex.id == "train"},
                             self.config.train.steps)

    def _hidden_inputs(self) -> list[tuple[str, bytes]]:
        return [(file, serialized(tensors)) for file, tensors in self._hidden]

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
                worker = self._worker(plan_path, max_total=self._budget(pending, case_info))
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
        hidden = False  # once the hidden inputs went down: only verdicts may come back
        files = line_counts(self.mounts.submission)

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
                worker.go([(file, serialized(tensors)) for file, tensors in self._private])
                deadline = time.monotonic() + GRACE + STARTUP_TIMEOUT / 4
            elif kind == "exercise_start" and meta.get("exercise") in pending and current is None:
                current = meta["exercise"]
                started = time.monotonic()
                deadline = started + self.timeout + MARGIN
            elif kind == "need_hidden" and current is None:
                hidden = True
                worker.go(self._hidden_inputs())
                deadline = time.monotonic() + GRACE
            elif kind == "done":
                return settled
            elif run is None or meta.get("exercise") != current:
                continue  # out of order, or not for the exercise in progress
            elif kind == "exercise_error" and run.error is None and hidden:
                # The first error stands: a masked hidden-case one never replaces the public cases' real one.
                run.error = {"status": "error", "message": "failed on the hidden cases (details stay hidden)",
                             "traceback": ""}
            elif kind == "exercise_error" and run.error is None:
                run.error = {k: str(meta.get(k, ""))[:4000] for k in ("status", "message", "traceback")}
            elif kind == "result" and (str(meta.get("case")) in self._hidden_names) == hidden:
                run.results[str(meta.get("case"))] = (clean_result(meta, hidden, self._expected(current)), blob)
            elif kind == "integrity" and len(run.findings) < MAX_FINDINGS \
                    and (finding := clean_finding(meta, current, files, hidden)) is not None \
                    and finding not in run.findings:  # the hidden phase's flag once
                run.findings.append(finding)
            elif kind == "exercise_end":
                run.seconds += time.monotonic() - started
                settled.add(current)
                current = None
                deadline = time.monotonic() + GRACE
