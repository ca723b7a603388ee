"""The score report: one pydantic model; every other output is a view of it."""

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_serializer
from pydantic_core import PydanticSerializationError

from grader.safe_text import clean_tree, valid

# 1.1 adds optional fields only: hint_levels, cascade_of, answer_digest, config_source,
# isolation.syscall_filter and isolation.tasks; a 1.0 report still validates.
SCHEMA_VERSION = "1.1"
_ENCODER_CHECKS = "grader: the encoder checks the strings"  # a serialization context key (Report.model_dump_json)

CaseStatus = Literal[
    "passed", "missing", "not_implemented", "wrong_type", "wrong_shape", "not_finite",
    "wrong_values", "error", "timeout", "crashed", "not_submitted", "not_allowed",
]


class CaseResult(BaseModel):
    case: str
    visibility: Literal["public", "hidden"]
    passed: bool
    status: CaseStatus
    exact: bool | None = None
    max_abs_diff: float | None = None
    rel_err: float | None = None
    expected_shape: list[int] | None = None
    got_shape: list[int] | None = None
    message: str = ""
    hint: str | None = None
    hint_levels: list[str] = Field(default_factory=list, description="escalating hints: nudge, local rule, worked expression")
    note: str | None = None
    answer_digest: str | None = Field(None, description="a short hash of a wrong answer no known mistake explains "
                                                        "(the same digest means the same numbers); never for a right one")


class CheckResult(BaseModel):
    name: str = Field(description="the gradient's name without the d (or `trajectory`)")
    score: float
    max_score: float
    passed_cases: int
    total_cases: int
    status: Literal["passed", "partial", "failed"]
    message: str = ""
    hint: str | None = None
    hint_levels: list[str] = Field(default_factory=list, description="escalating hints: nudge, local rule, worked expression")
    cascade_of: str | None = Field(None, description="right given the student's own upstream answers: "
                                                     "wrong only because this gradient upstream is")
    cases: list[CaseResult]


class ExerciseResult(BaseModel):
    id: str
    title: str
    file: str
    function: str
    score: float
    max_score: float
    status: Literal["passed", "partial", "failed", "not_submitted", "error", "timeout", "crashed", "not_allowed"]
    message: str = ""
    traceback: str | None = None
    seconds: float = 0.0
    checks: list[CheckResult]


class CaseInfo(BaseModel):
    name: str
    visibility: Literal["public", "hidden"]
    description: str | None = Field(None, description="shapes and edge-case flags (public cases only)")


class SubmissionInfo(BaseModel):
    path: str
    kind: Literal["folder", "zip", "notebook"]
    sha256: str
    student_id: str | None = None
    files: list[str]


class CapturedOutput(BaseModel):
    stdout: str = ""
    stderr: str = ""
    dropped_bytes: int = 0


class IntegrityFinding(BaseModel):
    exercise: str | None
    file: str
    line: int | None
    pattern: str = Field(description="the construct found, e.g. `.backward()`")
    message: str


class IsolationInfo(BaseModel):
    level: Literal["bwrap", "unshare", "process"]
    description: str
    hides_files: bool
    timeout_s: float
    memory_mb: int
    cpu_seconds: int
    file_size_mb: int
    open_files: int
    output_bytes: int
    workers_started: int = 0
    syscall_filter: str | None = Field(None, description="the exercise children's seccomp filter, or why there is none")
    tasks: str | None = Field(None, description="how a batch slot's processes and threads are capped, if they are")


class Environment(BaseModel):
    python: str
    torch: str
    platform: str
    dtype: str


class NotebookExecution(BaseModel):
    """Running the whole notebook top to bottom (grade --execute); never changes the score."""

    status: Literal["ok", "failed", "timeout", "error"]
    message: str = ""
    cells_total: int = Field(0, description="code cells in the notebook")
    cells_run: int = Field(0, description="code cells that finished without an error")
    failed_cell: int | None = Field(None, description="1-based position of the failing cell among all cells")
    error: str | None = Field(None, description="the exception, e.g. `NameError: name 'x' is not defined`")
    traceback: str | None = None
    cell_timeout_s: float = 0.0
    seconds: float = 0.0


class NotebookInfo(BaseModel):
    format: Literal["tagged", "functions", "lecture"] = Field(
        description="tagged: exercise cells found by tag; functions: by the contract's function names; "
                    "lecture: the lecture's own notebook (cells under '# Exercise N' headers)")
    exercise_cells: dict[str, list[int]] = Field(
        default_factory=dict, description="exercise id -> 1-based positions of the cells graded for it")
    notes: list[str] = Field(default_factory=list)
    execution: NotebookExecution | None = None


class Report(BaseModel):
    schema_version: str = SCHEMA_VERSION
    grader_version: str
    config_version: str
    config_fingerprint: str
    config_source: str = Field("", description="where the grading policy came from: a grading.yaml path, or the "
                                                "course policy packaged with the grader")
    submission: SubmissionInfo
    started_at: str
    finished_at: str
    duration_s: float
    score: float
    max_score: float
    hidden_cases: Literal["included", "not_run"]
    cases: list[CaseInfo]
    notes: list[str] = Field(default_factory=list)
    exercises: list[ExerciseResult]
    output: CapturedOutput = Field(default_factory=CapturedOutput)
    integrity: list[IntegrityFinding] = Field(default_factory=list)
    notebook: NotebookInfo | None = Field(None, description="for a notebook submission: how it was read (and run)")
    isolation: IsolationInfo
    environment: Environment

    def exercise(self, ex_id: str) -> ExerciseResult:
        return next(e for e in self.exercises if e.id == ex_id)

    @model_serializer(mode="wrap")
    def _valid_strings(self, handler, info):
        """Every string made valid Unicode on the way out: a student's lone surrogate never stops a report.

        Almost every report is valid already (the worker's frames are cleaned as they arrive): one pass of
        the C JSON encoder says so, ten times faster than walking the tree in Python; else walk it. For
        model_dump_json, pydantic's own encoder is that pass (see below).
        """
        data = handler(self)
        if isinstance(info.context, dict) and info.context.get(_ENCODER_CHECKS):
            return data
        try:
            json.dumps(data, ensure_ascii=False, check_circular=False).encode("utf-8")
            return data
        except (UnicodeEncodeError, TypeError, ValueError, RecursionError):
            return clean_tree(data)

    def model_dump_json(self, **kwargs) -> str:
        """The report as JSON, encoded once: pydantic's encoder refuses a lone surrogate itself, and only
        then is the report dumped again with its strings made valid (the serializer above)."""
        if kwargs.get("context") is None:
            try:
                return super().model_dump_json(**kwargs, context={_ENCODER_CHECKS: True})
            except PydanticSerializationError:
                pass
        return super().model_dump_json(**kwargs)


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a report.

    Always UTF-8, and any string is made valid first: a view can always be written.
    """
    path = Path(path)
    text = valid(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(report: Report, path: Path) -> None:
    write_atomically(path, report.model_dump_json(indent=2))


def json_schema() -> str:
    return json.dumps(Report.model_json_schema(), indent=2)
