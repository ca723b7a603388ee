"""One submission, end to end: config -> cases and references -> worker -> scoring -> report."""

from __future__ import annotations

import contextlib
import platform
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from grader import __version__
from grader.config import PACKAGED_SOURCE, GradingConfig
from grader.course.registry import EXERCISES
from grader.phases import mark
from grader.sandbox import prestart
from grader.sandbox.levels import choose_level, describe, make_readable
from grader.sandbox.runner import SubmissionRunner

# Imported where used, once the worker has started: the report's models, the scan, the reader.


def build_cases(config: GradingConfig, secret: str | None, *, cache: Path | None = None, arrays: bool = False):
    """Every case with its references. `cache`: a folder of grader.course.refcache to read them from (or fill);
    used with a secret only (its files are sealed with it) and never inside the sandbox's view.
    `arrays`: cases read from the cache may hold numpy arrays (torch not imported yet: refcache.as_torch)."""
    specs = [*config.cases, *config.hidden_specs(secret)]
    if cache is not None and secret:
        from grader.course import refcache
        from grader.sandbox.levels import shared_dirs

        cache = cache if refcache.usable_with(cache, shared_dirs()) else None
    else:
        cache = None
    if cache is not None:
        key = refcache.cache_key(config, secret)
        cases = refcache.load(cache, key, specs, secret, arrays=arrays)
        if cases is not None:
            mark("cases read from the cache")
            return cases
    from grader.course.cases import build_case  # imports torch

    exercises = config.exercise_specs()
    cases = [build_case(spec, config.dtype, config.train, exercises) for spec in specs]
    mark("cases built")
    if cache is not None:
        refcache.store(cache, key, cases, secret)
    return cases


def _integrity_findings(static, outcome) -> list[IntegrityFinding]:
    """The scan's findings, then what the worker's guard caught while running."""
    from grader.report import IntegrityFinding

    found = [IntegrityFinding(exercise=f.exercise, file=f.file, line=f.line, pattern=f.pattern, message=f.message)
             for f in static]
    for ex_id, run in outcome.exercises.items():
        for f in run.findings:
            file = f["file"] or EXERCISES[ex_id].file
            where = f"{file} line {f['line']}" if f["line"] else file
            found.append(IntegrityFinding(exercise=ex_id, file=file, line=f["line"], pattern=f["pattern"],
                                          message=f"{where}: {f['message']}"))
    return found


@contextlib.contextmanager
def _workspace(slot, prestarted=None):
    """A private temporary folder (the prestarted worker's, if any), or the slot's (emptied again afterwards: it
    holds one submission at a time)."""
    if prestarted is not None:
        try:
            yield prestarted.workdir
        finally:
            shutil.rmtree(prestarted.workdir, ignore_errors=True)
        return
    if slot is None:
        with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
            yield Path(tmp)
        return
    try:
        yield slot.root
    finally:
        slot.clear()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Run:
    """A submission whose worker has finished: everything scoring it needs (see `run_submission`)."""

    path: Path
    config: GradingConfig
    submission: object
    level: str
    timeout: float
    student_id: str | None
    enabled: list[str]
    lecture: object
    static: list
    cases: list
    outcome: object
    started_at: str
    seconds: float
    tasks: str | None = None  # how the batch slot caps processes and threads (grader.sandbox.slot)
    execution: object | None = None  # a notebook run top to bottom (--execute): grader.report.NotebookExecution


def grade(path: Path, config: GradingConfig, *, secret: str | None = None, timeout: float | None = None,
          isolation: str | None = None, student_id: str | None = None, cases=None,
          execute: bool | None = None, slot=None, submission=None, cache: Path | None = None) -> Report:
    """Grade one submission. `cases` may be passed in to reuse references across submissions, or read
    from the folder `cache` (grader.course.refcache).

    `execute` (notebooks only): also run the notebook top to bottom; None follows grading.yaml.
    Batch grading passes a `slot` (grader.sandbox.slot.Slot: a pre-warmed fork server, whose isolation level
    wins) and the already loaded `submission`.
    """
    return score_run(run_submission(path, config, secret=secret, timeout=timeout, isolation=isolation,
                                    student_id=student_id, cases=cases, execute=execute, slot=slot,
                                    submission=submission, cache=cache))


def run_submission(path: Path, config: GradingConfig, *, secret: str | None = None, timeout: float | None = None,
                   isolation: str | None = None, student_id: str | None = None, cases=None,
                   execute: bool | None = None, slot=None, submission=None, cache: Path | None = None) -> Run:
    """The first half of `grade`: read, scan and run the submission (batch grading scores it elsewhere).

    Without a slot, the worker starts first, before the submission is even read: its torch import is
    the floor of a grade, and everything else here overlaps with it.
    """
    started_at, t0 = _now(), time.perf_counter()
    timeout = timeout or config.timeout
    requested = isolation or config.isolation
    prestarted, unverified = None, False
    if slot is not None:
        level = slot.level
    else:
        level, unverified = _first_level(requested)
        limits = config.limits.model_dump()
        prestarted = prestart.take(level, limits)  # `grader grade`'s worker, if it started as this one would
        prestart.remember(level, limits)
    with _workspace(slot, prestarted) as tmp:
        runner = None
        if slot is None:
            runner = SubmissionRunner(config, level, timeout, tmp, tmp / "submission", prestarted=prestarted)
            runner.start_early()
            mark("worker started" if prestarted is None else "prestarted worker adopted")
        try:
            submission, lecture, static, enabled, submitted = _read(path, config, submission)
            staged = slot.stage(submission) if slot is not None else _stage(submission, runner.mounts.submission)
            if slot is not None:
                runner = SubmissionRunner(config, level, timeout, tmp, staged, server=slot)
            if cases is None:  # a single grade: torch is imported while the worker runs (_import_scoring)
                cases = build_cases(config, secret, cache=cache, arrays=slot is None)
            extra = None
            if lecture is not None:
                from grader.scoring import lecture as lecture_format
                from grader.submission.lecture.plan import plan_entries

                cases = lecture_format.lecture_cases(cases)
                extra = plan_entries(lecture, timeout, len(cases))
            warm = _import_scoring() if slot is None else None
            outcome = runner.run(submitted, cases, extra=extra)
            if warm is not None:
                warm.join()
            from grader.course.refcache import as_torch

            cases = as_torch(cases)
            if unverified and not outcome.workers_ready:
                # No worker said hello under bubblewrap (or none ran): the probe decides the level the
                # report states, and a grade whose worker could not start runs again at that level.
                level = choose_level(requested)
                if outcome.workers_started:
                    runner = SubmissionRunner(config, level, timeout, tmp, staged)
                    outcome = runner.run(submitted, cases, extra=extra)
        finally:
            if runner is not None:
                runner.release()
        mark("worker finished")
    execution = None
    if submission is not None and submission.notebook is not None and (
            config.notebook.execute if execute is None else execute):
        from grader.sandbox.notebook_run import execute_notebook  # the run phase: scoring never starts a process

        execution = execute_notebook(submission.notebook.data, config, level, config.notebook.cell_timeout)
    return Run(path=path, config=config, submission=submission, level=level, timeout=timeout,
               student_id=student_id, enabled=enabled, lecture=lecture, static=static,
               cases=cases, outcome=outcome, started_at=started_at, seconds=time.perf_counter() - t0,
               tasks=slot.tasks if slot is not None else None, execution=execution)


def _import_scoring() -> threading.Thread:
    """Import the scoring side while the worker runs: this process only waits for answers meanwhile."""
    def load():
        import torch  # noqa: F401 - first: the reference cache's cases arrive as numpy arrays

        mark("grading process imported torch")
        import grader.feedback.engine  # noqa: F401
        import grader.scoring.score  # noqa: F401

    thread = threading.Thread(target=load, name="import-scoring", daemon=True)
    thread.start()
    return thread


def _first_level(requested: str) -> tuple[str, bool]:
    """The level of the first worker, and whether it is unverified.

    With bubblewrap installed, `auto` and `bwrap` start the worker under it without the probe (a
    sandboxed start of its own): a worker that says hello proves the level works.
    """
    if requested in ("auto", "bwrap") and shutil.which("bwrap"):
        return "bwrap", True
    return choose_level(requested), False


def _read(path: Path, config: GradingConfig, submission):
    """(submission, lecture plan or None, scan findings, enabled exercises, exercises to run)."""
    from grader.submission.integrity import scan_train
    from grader.submission.scan_cache import scan  # integrity.scan, once per distinct content
    from grader.submission.load import SubmissionError, load_submission

    submission = submission or load_submission(path)
    mark("submission read")
    enabled = [ex for ex, cfg in config.exercises.items() if cfg.enabled]
    submitted = [ex for ex in enabled if EXERCISES[ex].file in submission.files]
    lecture = getattr(submission.notebook, "lecture", None)  # the lecture's own notebook: cells, not files
    if lecture is not None:
        from grader.scoring import lecture as lecture_format
        from grader.submission.lecture.plan import scan_plan

        if not lecture_format.has_lecture_case(config):
            raise SubmissionError(lecture_format.no_lecture_case())
        submitted = [ex for ex in enabled if ex in lecture.exercise_cells()]
    # Autograd (the answer key) and ways around the scan: such an exercise scores 0 and is not run.
    static = (scan_plan(lecture, config.integrity.allow) if lecture is not None
              else scan(submission.files, config.integrity.allow))
    if lecture is not None and lecture.train is not None:  # exercise 4's loop: the same check
        static += scan_train(lecture.train, config.integrity.allow)
    blocked = {f.exercise for f in static if f.exercise}
    mark("submission scanned")
    return submission, lecture, static, enabled, [ex for ex in submitted if ex not in blocked]


def _stage(submission, folder: Path) -> Path:
    """Into the folder the early worker already has in view (it reads it only once released)."""
    submission.stage(folder)
    make_readable(folder)
    return folder


def score_run(run: Run) -> Report:
    """The second half of `grade`: score what the worker answered and build the report."""
    from grader.report import (CaseInfo, CapturedOutput, Environment, IsolationInfo, Report,
                               SubmissionInfo)
    from grader.sandbox.handle import filter_status
    from grader.feedback.engine import Diagnoser  # the feedback pass over what scoring found
    from grader.scoring.score import score_exercise, score_not_allowed

    t0 = time.perf_counter()
    path, config, submission, cases, outcome, level = (run.path, run.config, run.submission, run.cases, run.outcome,
                                                       run.level)
    enabled, lecture, static, timeout = run.enabled, run.lecture, run.static, run.timeout
    findings = []
    if lecture is not None:
        from grader.scoring import lecture as lecture_format

        exercises, findings = lecture_format.score(lecture, enabled, config, cases, outcome, Path(path).name,
                                                   Diagnoser, static=static)
    else:
        exercises = [score_exercise(ex, config, cases, outcome.exercises.get(ex), Diagnoser) for ex in enabled]
    mark("exercises scored")
    integrity = _integrity_findings(static, outcome)
    if lecture is None:
        for i, ex in enumerate(enabled):
            messages = [f.message for f in integrity if f.exercise == ex]
            if messages:
                exercises[i] = score_not_allowed(ex, config, cases, messages, outcome.exercises.get(ex), Diagnoser)
    notes = [f"Grading policy: {config.source}."] if config.source.startswith(PACKAGED_SOURCE) else []
    hidden = any(c.spec.hidden for c in cases)
    if not hidden:
        notes.append("Hidden cases were not run (no GRADER_SECRET or --secret-file): "
                     "this score covers the public cases only.")
    extra = sorted(set(submission.files) - {EXERCISES[ex].file for ex in EXERCISES})
    if extra:
        notes.append(f"Other Python files in the submission, importable by the exercises: {', '.join(extra)}")
    notes += getattr(submission, "notes", [])  # what the reader skipped (links), and why
    limits = config.limits
    import torch

    report = Report(
        grader_version=__version__,
        config_version=config.version,
        config_fingerprint=config.fingerprint(),
        config_source=config.source,
        submission=SubmissionInfo(path=str(path), kind=submission.kind, sha256=submission.sha256,
                                  student_id=run.student_id, files=sorted(submission.files)),
        started_at=run.started_at,
        finished_at=_now(),
        duration_s=round(run.seconds + time.perf_counter() - t0, 3),
        score=round(sum(e.score for e in exercises), 6),
        max_score=round(sum(e.max_score for e in exercises), 6),
        hidden_cases="included" if hidden else "not_run",
        cases=[CaseInfo(name=c.spec.name, visibility="hidden" if c.spec.hidden else "public",
                        description=None if c.spec.hidden else c.spec.describe()) for c in cases],
        notes=notes,
        exercises=exercises,
        output=CapturedOutput(stdout=outcome.stdout, stderr=outcome.stderr, dropped_bytes=outcome.output_dropped),
        integrity=integrity,
        isolation=IsolationInfo(level=level, description=describe(level), hides_files=level == "bwrap",
                                timeout_s=timeout, memory_mb=limits.memory_mb, cpu_seconds=limits.cpu_seconds,
                                file_size_mb=limits.file_size_mb, open_files=limits.open_files,
                                output_bytes=limits.output_bytes, workers_started=outcome.workers_started,
                                syscall_filter=filter_status(), tasks=run.tasks),
        environment=Environment(python=sys.version.split()[0], torch=torch.__version__,
                                platform=platform.platform(), dtype=config.dtype),
    )
    if submission.notebook is not None:
        from grader.scoring.notebook_cells import finish_report

        finish_report(report, submission.notebook, findings=findings, execution=run.execution)
    return report
