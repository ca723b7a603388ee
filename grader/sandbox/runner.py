"""The grading process's side of the boundary: start workers, read answers, enforce time.

One sandboxed worker runs every exercise of a submission, each in a child
process of its own; the worker enforces each exercise's timeout and reports
children that crash. The worker is a process of its own (WorkerProcess) or,
in batch grading, a session forked by a pre-warmed fork server
(grader.sandbox.slot). Hidden cases' inputs never touch the disk: they go down the
worker's go pipe, as safetensors bytes, only when it has finished every
public case and asks for them (see grader.sandbox.inside.session). This side is the
backstop: when the worker itself stops answering (past an exercise's
timeout plus a margin) or dies, its whole process group is killed, the
exercise in progress is marked, and a fresh worker takes the exercises that
had not been answered yet.
Frames are read with caps on their size and on the total, and only those of
the exercise in progress are kept.
"""

import json
import math
import time
from pathlib import Path

from grader.config import GradingConfig
from grader.course.registry import EXERCISES
from grader.phases import mark
from grader.sandbox import sharing
from grader.sandbox.handle import GRACE, STARTUP_TIMEOUT, WorkerProcess, workspace
from grader.sandbox.levels import make_readable
from grader.sandbox.outcome import ExerciseRun, RunOutcome, clean_finding, clean_result, line_counts

MARGIN = 5.0             # past an exercise's timeout before the worker itself counts as hung
MAX_FINDINGS = 20        # runtime integrity reports kept per exercise


_SERIALIZED: dict[int, tuple[dict, bytes]] = {}


def serialized(tensors: dict) -> bytes:
    """A case's inputs as safetensors bytes, made once per run (batch grading sends them for every submission)."""
    entry = _SERIALIZED.get(id(tensors))
    if entry is None or entry[0] is not tensors:
        if len(_SERIALIZED) > 256:
            _SERIALIZED.clear()
        entry = _SERIALIZED[id(tensors)] = (tensors, _to_bytes(tensors))
    return entry[1]


def _of_numpy(tensors: dict) -> bool:
    """Whether these are numpy arrays (a single grade's cases read from the reference cache, before torch is
    imported: grader.course.refcache) rather than torch tensors. safetensors writes the same bytes for both."""
    return any(type(t).__module__ == "numpy" for t in tensors.values())


def _to_bytes(tensors: dict) -> bytes:
    if _of_numpy(tensors):
        from safetensors.numpy import save
    else:
        from safetensors.torch import save
    return save(tensors)


def _to_file(tensors: dict, path: Path) -> None:
    path.write_bytes(_to_bytes(tensors))  # what save_file writes


_SPLIT: dict[int, tuple[dict, dict, dict]] = {}


def split_inputs(tensors: dict, private: frozenset[str]) -> tuple[dict, dict]:
    """(what may be written to the input file, what goes down the pipe), made once per case.

    The private inputs are autograd's answers that one exercise gets as an input (batch norm's dhpreact):
    never in an input file, where another exercise's child could read them (see Exercise.private_inputs).
    """
    entry = _SPLIT.get(id(tensors))
    if entry is None or entry[0] is not tensors:
        if len(_SPLIT) > 256:
            _SPLIT.clear()
        entry = _SPLIT[id(tensors)] = (tensors, {k: v for k, v in tensors.items() if k not in private},
                                       {k: v for k, v in tensors.items() if k in private})
    return entry[1], entry[2]


class SubmissionRunner:
    """Runs a submission's exercises in workers until each has an answer or a failure.

    Workers are processes of their own, or, with `server` (batch grading), sessions forked by a
    pre-warmed fork server whose folders (`server.mounts`) hold one submission at a time.
    """

    def __init__(self, config: GradingConfig, level: str, timeout: float, workdir: Path, submission: Path,
                 server=None, prestarted=None):
        """`prestarted`: a worker already started in `workdir` (grader.sandbox.prestart), used as the early one."""
        self.config = config
        self.level = level
        self.timeout = timeout
        self.workdir = workdir
        self.server = server
        if server is not None:
            self.mounts = server.mounts
            assert submission == self.mounts.submission, "stage the submission into the server's workspace"
        elif prestarted is not None:
            self.mounts = prestarted.mounts
            assert submission == self.mounts.submission, "stage the submission into the prestarted workspace"
        else:
            self.mounts = workspace(workdir, submission)
        self._early = prestarted.worker if prestarted is not None else None
        self._plans = 0
        self._hidden: list[tuple[str, dict]] = []  # sent down the go pipe once the public cases are done
        self._hidden_names: set[str] = set()
        self._private: list[tuple[str, dict]] = []  # public cases' private part: down the go pipe at the start
        self.extra: dict[str, dict] = {}  # per exercise: more plan fields (the lecture notebook's cells)
        self._keys: dict[str, set[str]] = {}  # per exercise: the answer keys it may send (_expected)

    def _worker(self, plan_path: Path, max_total: int = 1 << 30):
        if self.server is not None:
            return self.server.session(plan_path, max_total)
        return WorkerProcess(self.level, self.config.limits, self.mounts, plan_path, max_total=max_total)

    def start_early(self) -> None:
        """Start the first worker now, so its torch import overlaps the grader's own work.

        Not with a fork server: a session starts in milliseconds, and the server reads the plan
        (to share the public inputs with every session) once it is written.
        """
        if self.server is None and self._early is None:
            self._early = self._worker(self.mounts.inputs / "plan-1.json")

    def release(self) -> None:
        """Kill the early worker if nothing ran on it (the grade stopped before `run`)."""
        if self._early is not None:
            self._early.kill()
            self._early = None

    def write_inputs(self, cases) -> list[dict]:
        """Public case tensors as safetensors (a format that cannot carry code) plus what the worker needs.

        Hidden cases' inputs are never written to disk: they go down the go pipe once the worker has
        finished every public case (see `_drive`).
        """
        written = self.server.written if self.server is not None else {}
        described = []
        for case in cases:
            file = f"case-{case.spec.name}.safetensors"
            if case.spec.hidden:
                self._hidden.append((file, case.inputs))
                self._hidden_names.add(case.spec.name)
            else:
                public, private = split_inputs(case.inputs, case.private)
                if private:
                    self._private.append((file, private))
                if written.get(file) is not case.inputs:  # a fork server's folder keeps the batch's public inputs
                    _to_file(public, self.mounts.inputs / file)
                    written[file] = case.inputs
            largest = max(math.prod(t.shape) for t in case.inputs.values())
            described.append({"name": case.spec.name, "file": file, "ints": case.ints, "hidden": case.spec.hidden,
                              "max_numel": 16 * largest + 4096})
        make_readable(self.mounts.inputs)
        return described

    def _expected(self, ex_id: str) -> set[str]:
        """The answer keys exercise `ex_id` can send back (a hidden case's result keeps no other)."""
        from grader.sandbox.inside.verdicts import expected_keys

        if ex_id not in self._keys:  # asked for every frame: made once per run
            self._keys[ex_id] = expected_keys(self._entry(ex_id))
        return self._keys[ex_id]

    def _hidden_inputs(self) -> list[tuple[str, bytes]]:
        return [(file, serialized(tensors)) for file, tensors in self._hidden]

    def _entry(self, ex_id: str) -> dict:
        """The exercise as the worker sees it: the spec's plan (check kinds), plus the submission kind's fields."""
        return {**EXERCISES[ex_id].plan(self.config), **self.extra.get(ex_id, {})}

    def _plan(self, exercise_ids: list[str], cases: list[dict]) -> Path:
        self._plans += 1
        path = self.mounts.inputs / f"plan-{self._plans}.json"
        entries = [self._entry(ex_id) for ex_id in exercise_ids]
        plan = {"dtype": self.config.dtype, "submission": str(self.mounts.submission),
                "inputs": str(self.mounts.inputs), "cwd": str(self.mounts.cwd), "cases": cases,
                "exercises": entries, "groups": sharing.groups(entries, self.mounts.submission),
                "sgd": self.config.train.model_dump(),
                "timeout": self.timeout, "memory_mb": self.config.limits.memory_mb,
                "file_size_mb": self.config.limits.file_size_mb}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan))
        tmp.chmod(0o644)
        tmp.rename(path)
        return path

    def _budget(self, exercise_ids: list[str], cases: list[dict]) -> int:
        """The most bytes honest answers could take (16x every input's size), with room to spare."""
        keys = sum(len(self._expected(ex)) for ex in exercise_ids)
        per_case = max((c["max_numel"] for c in cases), default=0) * 8
        return 2 * (keys + 1) * len(cases) * per_case + (64 << 20)

    def run(self, exercise_ids: list[str], cases, extra: dict[str, dict] | None = None) -> RunOutcome:
        self.extra = extra or {}
        self._keys = {}
        case_info = self.write_inputs(cases)
        mark("inputs written")
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
                outcome.workers_ready += 1
                mark("worker said hello (torch imported)")
                worker.go([(file, serialized(tensors)) for file, tensors in self._private])
                deadline = time.monotonic() + GRACE + STARTUP_TIMEOUT / 4
            elif kind == "exercise_start" and meta.get("exercise") in pending and current is None:
                current = meta["exercise"]
                started = time.monotonic()
                deadline = started + self.timeout + MARGIN
            elif kind == "need_hidden" and current is None:
                mark("public cases run")
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
                    and (finding := clean_finding(meta, EXERCISES[current].file, files, hidden)) is not None \
                    and finding not in run.findings:  # the hidden phase's flag once
                run.findings.append(finding)
            elif kind == "exercise_end":
                mark(f"exercise {current} answered")
                run.seconds += time.monotonic() - started
                settled.add(current)
                current = None
                deadline = time.monotonic() + GRACE
