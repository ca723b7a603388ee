"""One submission of a batch, the same for every executor (local slots or a Dask worker): its entry, its
grading and its result. Shared by grader.batch.local and grader.batch.cluster, so neither imports the other
nor the batch's driver (grader.batch.run)."""

import traceback
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from grader import phases
from grader.config import GradingConfig
from grader.report import Report


KINDS = (".zip", ".ipynb")
TAMPERED = ("not graded: while it ran, its grading sandbox's own process was changed ({}), and again when it was "
            "graded a second time in a fresh sandbox; a submission must not touch the grader's processes")


class Entry(BaseModel):
    """One submission of the batch."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: Path
    content_hash: str
    submitted_at: str | None = None


class Result(BaseModel):
    """What grading one entry gave: a report (or the run to score), or why there is none."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    entry: Entry
    status: str  # graded | unreadable | error
    report: Report | None = None
    run: Any = None  # grader.pipeline.Run, between running and scoring
    message: str = ""


def run_entry(entry: Entry, config: GradingConfig, cases, timeout: float, slot=None, execute=None,
              isolation: str | None = None, submission=None) -> Result:
    """Read and run one entry (its worker, in `slot`); never raises. Score it with `finish_entry`.

    `submission`: the entry already read (grader.submission.load.Submission), e.g. shipped to a Dask worker.
    """
    from grader.pipeline import run_submission
    from grader.submission.load import SubmissionError, load_submission

    try:
        with phases.phase("load"):
            submission = submission or load_submission(entry.path)
        for attempt in range(2):
            if slot is not None:
                slot.tampered = []
            with phases.phase("run"):
                run = run_submission(entry.path, config, cases=cases, timeout=timeout, slot=slot,
                                     submission=submission, student_id=entry.name, execute=execute,
                                     isolation=isolation)
            if slot is None or not slot.tampered:
                return Result(entry=entry, status="graded", run=run)
            # Its server was changed during the session (the slot has replaced it): grade it again in the
            # new one, so nothing is recorded from a tampered slot; twice is on purpose, and not a grade.
        return Result(entry=entry, status="error", message=TAMPERED.format(", ".join(slot.tampered)))
    except SubmissionError as err:
        return Result(entry=entry, status="unreadable", message=str(err)[:1000])
    except Exception as err:  # noqa: BLE001 - one submission must never stop the batch
        return _failed(entry, err)


def finish_entry(result: Result) -> Result:
    """Score a run entry into its report (the grading process's own work, no worker needed)."""
    from grader.pipeline import score_run

    if result.run is None:
        return result
    try:
        with phases.phase("score"):
            report = score_run(result.run)
        return Result(entry=result.entry, status="graded", report=report)
    except Exception as err:  # noqa: BLE001
        return _failed(result.entry, err)


def grade_entry(entry: Entry, config: GradingConfig, cases, timeout: float, slot=None, execute=None,
                isolation: str | None = None, submission=None) -> Result:
    """Run and score one entry; never raises: an unreadable submission, or one that breaks the grader, is a row too."""
    return finish_entry(run_entry(entry, config, cases, timeout, slot, execute, isolation, submission))


def _failed(entry: Entry, err: Exception) -> Result:
    return Result(entry=entry, status="error",
                  message=f"the grader failed: {type(err).__name__}: {err}"[:1000] + "\n"
                          + traceback.format_exc(limit=5)[-2000:])
