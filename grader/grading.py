"""One submission, end to end: config -> cases and references -> worker -> scoring -> report."""

import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from grader import __version__
from grader.config import GradingConfig
from grader.exercises import EXERCISES
from grader.report import CaseInfo, CapturedOutput, Environment, IsolationInfo, Report, SubmissionInfo
from grader.runner import SubmissionRunner
from grader.sandbox import LEVEL_NOTES, choose_level
from grader.submission import load_submission


def build_cases(config: GradingConfig, secret: str | None):
    from grader.cases import build_case  # imports torch

    specs = [*config.cases, *config.hidden_specs(secret)]
    return [build_case(spec, config.dtype, config.train) for spec in specs]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def grade(path: Path, config: GradingConfig, *, secret: str | None = None, timeout: float | None = None,
          isolation: str | None = None, student_id: str | None = None, cases=None) -> Report:
    """Grade one submission. `cases` may be passed in to reuse references across submissions."""
    started_at, t0 = _now(), time.perf_counter()
    submission = load_submission(path)
    level = choose_level(isolation or config.isolation)
    timeout = timeout or config.timeout
    enabled = [ex for ex, cfg in config.exercises.items() if cfg.enabled]
    submitted = [ex for ex in enabled if EXERCISES[ex].file in submission.files]

    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        staged = submission.stage(Path(tmp) / "submission")
        runner = SubmissionRunner(config, level, timeout, Path(tmp), staged)
        if submitted:
            runner.start_early()  # its torch import overlaps with building the cases below
        if cases is None:
            cases = build_cases(config, secret)
        outcome = runner.run(submitted, cases)

    from grader.scoring import score_exercise

    exercises = [score_exercise(ex, config, cases, outcome.exercises.get(ex)) for ex in enabled]
    notes = []
    hidden = any(c.spec.hidden for c in cases)
    if not hidden:
        notes.append("Hidden cases were not run (no GRADER_SECRET or --secret-file): "
                     "this score covers the public cases only.")
    extra = sorted(set(submission.files) - {EXERCISES[ex].file for ex in EXERCISES})
    if extra:
        notes.append(f"Other Python files in the submission, importable by the exercises: {', '.join(extra)}")
    limits = config.limits
    import torch

    return Report(
        grader_version=__version__,
        config_version=config.version,
        config_fingerprint=config.fingerprint(),
        submission=SubmissionInfo(path=str(path), kind=submission.kind, sha256=submission.sha256,
                                  student_id=student_id, files=sorted(submission.files)),
        started_at=started_at,
        finished_at=_now(),
        duration_s=round(time.perf_counter() - t0, 3),
        score=round(sum(e.score for e in exercises), 6),
        max_score=round(sum(e.max_score for e in exercises), 6),
        hidden_cases="included" if hidden else "not_run",
        cases=[CaseInfo(name=c.spec.name, visibility="hidden" if c.spec.hidden else "public",
                        description=None if c.spec.hidden else c.spec.describe()) for c in cases],
        notes=notes,
        exercises=exercises,
        output=CapturedOutput(stdout=outcome.stdout, stderr=outcome.stderr, dropped_bytes=outcome.output_dropped),
        isolation=IsolationInfo(level=level, description=LEVEL_NOTES[level], hides_files=level == "bwrap",
                                timeout_s=timeout, memory_mb=limits.memory_mb, cpu_seconds=limits.cpu_seconds,
                                file_size_mb=limits.file_size_mb, open_files=limits.open_files,
                                output_bytes=limits.output_bytes, workers_started=outcome.workers_started),
        environment=Environment(python=sys.version.split()[0], torch=torch.__version__,
                                platform=platform.platform(), dtype=config.dtype),
    )
