"""The course's grading policy (`grading.yaml`), validated with pydantic.

Which policy applies: `--config` when given, else `grading.yaml` in the current folder, else
the course policy packaged with the grader (`grader/grading.yaml`, a copy of the repository's
top-level `grading.yaml`, which stays the source), so a student grades from any folder.
"""

import hashlib
import importlib.resources
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from grader.course.registry import EXERCISES, DefinitionError, load_definitions


class ConfigError(Exception):
    """A problem with grading.yaml or the command line, shown as one line."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShapeSpec(Strict):
    n: int = Field(32, ge=2, le=4096, description="batch size (>= 2: batch norm divides by n-1)")
    block: int = Field(3, ge=1, le=64)
    n_embd: int = Field(10, ge=1, le=1024)
    n_hidden: int = Field(64, ge=1, le=4096)
    vocab: int = Field(27, ge=2, le=4096)
    repeated_indices: bool = Field(False, description="draw Xb from a few rows so many indices repeat")
    unused_vocab: bool = Field(False, description="leave some rows of C out of Xb entirely")
    targets: Literal["random", "argmax"] = Field("random", description="argmax: Yb is the arg-max of the logits")


class CaseSpec(ShapeSpec):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    seed: int = Field(ge=0, lt=2**63)
    hidden: bool = False

    def describe(self) -> str:
        flags = [f for f in ("repeated_indices", "unused_vocab") if getattr(self, f)]
        if self.targets == "argmax":
            flags.append("argmax targets")
        shape = f"n={self.n} block={self.block} n_embd={self.n_embd} n_hidden={self.n_hidden} vocab={self.vocab}"
        return shape + (f" ({', '.join(flags)})" if flags else "")


class ExerciseConfig(Strict):
    points: float = Field(gt=0, description="the exercise's total; split equally among its checks")
    check_points: dict[str, float] = Field(default_factory=dict, description="fixed points for named checks")
    enabled: bool = True


class TrainConfig(Strict):
    steps: int = Field(3, ge=1, le=50, description="SGD steps of the trajectory check")
    lr: float = Field(0.1, gt=0)


class Limits(Strict):
    memory_mb: int = Field(4096, ge=256, description="address-space cap of the worker")
    cpu_seconds: int = Field(300, ge=1, description="CPU time of one worker")
    file_size_mb: int = Field(64, ge=1)
    open_files: int = Field(256, ge=32)
    output_bytes: int = Field(65536, ge=1024, description="captured stdout/stderr kept per stream")


class IntegrityConfig(Strict):
    allow: list[str] = Field(default_factory=list,
                             description="rule ids of the integrity scan to allow (see grader.submission.integrity.RULES), or single constructs such as 'import scipy' or 'torch.load'")

    @field_validator("allow")
    @classmethod
    def _known_rules(cls, value):
        from grader.submission.integrity import check_allow

        return check_allow(value)


class NotebookConfig(Strict):
    execute: bool = Field(False, description="also run notebook submissions top to bottom (never changes the score)")
    cell_timeout: float = Field(120.0, gt=0, le=3600, description="seconds per cell when running a notebook")


class LatePolicy(Strict):
    """Late submissions (batch grading's gradebook): a deadline and a penalty per started day late."""

    deadline: datetime = Field(description="e.g. 2026-03-01T23:59:00+01:00 (without an offset: UTC)")
    grace_minutes: float = Field(0.0, ge=0, description="minutes past the deadline that still count as on time")
    penalty_per_day: float = Field(0.0, ge=0, le=1, description="fraction of the score taken per started day late")
    max_penalty: float = Field(1.0, ge=0, le=1, description="the largest fraction taken in all")

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class GradingConfig(Strict):
    version: str = Field("unversioned", description="the course's own version of this policy")
    dtype: Literal["float64", "float32"] = "float64"
    rtol: float | Literal["auto"] = Field("auto", description="max scaled error; auto: 1e-8 in float64, 1e-3 in float32")
    timeout: float = Field(30.0, gt=0, le=3600, description="wall-clock seconds per exercise")
    isolation: Literal["auto", "bwrap", "unshare", "process"] = "auto"
    limits: Limits = Field(default_factory=Limits)
    integrity: IntegrityConfig = Field(default_factory=IntegrityConfig)
    definitions: list[str] = Field(default_factory=list,
                                   description="the course's own exercise definition files (paths relative to this "
                                               "file), each holding EXERCISE = Exercise(...)")
    exercises: dict[str, ExerciseConfig]
    train: TrainConfig = Field(default_factory=TrainConfig)
    notebook: NotebookConfig = Field(default_factory=NotebookConfig)
    cases: list[CaseSpec] = Field(min_length=1)
    hidden_cases: list[ShapeSpec] = Field(default_factory=list)
    hidden_visibility: Literal["hidden", "after_due_date", "after_published", "visible"] = "after_published"
    late: LatePolicy | None = Field(None, description="deadline and late penalty (gradebook only, never a report)")
    _source: str = PrivateAttr("")  # where it was read from (the report records it); not in the fingerprint
    _definitions: str = PrivateAttr("")  # a digest of the definition files' contents (in the fingerprint)
    _definition_files: list[str] = PrivateAttr(default_factory=list)  # their absolute paths

    @property
    def source(self) -> str:
        return self._source

    @field_validator("definitions")
    @classmethod
    def _load_definitions(cls, value, info: ValidationInfo):
        """Import the course's definition files now, so `exercises` below may name their ids."""
        base = Path((info.context or {}).get("base", "."))
        try:
            load_definitions([base / p for p in value])
        except DefinitionError as err:
            raise ConfigError(str(err)) from None  # not a ValueError: pydantic lets it through as it is
        return value

    @model_validator(mode="after")
    def _digest_definitions(self, info: ValidationInfo):
        base = Path((info.context or {}).get("base", "."))
        self._definition_files = [str((base / p).resolve()) for p in self.definitions]
        digest = hashlib.sha256()
        for file in self._definition_files:
            digest.update(Path(file).read_bytes())
        self._definitions = digest.hexdigest()[:16] if self.definitions else ""
        return self

    def __setstate__(self, state):
        """Unpickled in another process (a Dask worker): register the course's exercises there too."""
        super().__setstate__(state)
        if self._definition_files:
            try:
                load_definitions([Path(p) for p in self._definition_files])
            except DefinitionError as err:
                raise ConfigError(str(err)) from None

    @field_validator("exercises")
    @classmethod
    def _known_exercises(cls, value):
        unknown = sorted(set(value) - set(EXERCISES))
        if unknown:
            raise ValueError(f"unknown exercise {', '.join(unknown)} (known: {', '.join(EXERCISES)})")
        for ex_id, ex in value.items():
            bad = sorted(set(ex.check_points) - set(EXERCISES[ex_id].check_names))
            if bad:
                raise ValueError(f"{ex_id}: unknown check {', '.join(bad)} in check_points")
            if sum(ex.check_points.values()) > ex.points + 1e-9:
                raise ValueError(f"{ex_id}: check_points add up to more than points")
        return value

    @model_validator(mode="after")
    def _unique_case_names(self):
        names = [c.name for c in self.cases]
        if len(set(names)) != len(names):
            raise ValueError("case names must be unique")
        return self

    @property
    def tolerance(self) -> float:
        if self.rtol != "auto":
            return float(self.rtol)
        return 1e-8 if self.dtype == "float64" else 1e-3

    def exercise_specs(self) -> list:
        """The course's exercises (grader.course.spec.Exercise), in the order grading.yaml lists them."""
        return [EXERCISES[ex_id] for ex_id in self.exercises]

    def check_points(self, ex_id: str) -> dict[str, float]:
        """Points of every check of an exercise: fixed ones first, the rest shared equally."""
        ex = self.exercises[ex_id]
        checks = EXERCISES[ex_id].check_names
        free = [c for c in checks if c not in ex.check_points]
        share = (ex.points - sum(ex.check_points.values())) / len(free) if free else 0.0
        return {c: ex.check_points.get(c, share) for c in checks}

    def hidden_specs(self, secret: str | None) -> list[CaseSpec]:
        """Hidden cases: shapes from the config, seeds derived from the instructor's secret."""
        if not secret:
            return []
        specs = []
        for i, shape in enumerate(self.hidden_cases, start=1):
            digest = hashlib.sha256(f"backprop-ninja\0{secret}\0{i}".encode()).digest()
            seed = int.from_bytes(digest[:8], "big") % 2**63
            specs.append(CaseSpec(name=f"hidden-{i}", seed=seed, hidden=True, **shape.model_dump()))
        return specs

    def fingerprint(self) -> str:
        """What decides a report's content; the late policy does not (moving a deadline regrades nothing)."""
        content = self.model_dump_json(exclude={"late", "definitions"})
        if self.definitions:  # the files' contents decide the cases, not only their names
            content += f"{self.definitions}{self._definitions}"
        return hashlib.sha256(content.encode()).hexdigest()[:16]


def _describe_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "top level"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def packaged_policy() -> Path:
    """The course policy installed with the grader (package data)."""
    return Path(str(importlib.resources.files("grader").joinpath("grading.yaml")))


PACKAGED_SOURCE = "the course policy packaged with the grader"


def find_config(path: str | Path | None, cwd: Path | None = None) -> GradingConfig:
    """`path` if given (it must exist); else grading.yaml in `cwd` (the current folder); else the packaged policy."""
    if path:
        return load_config(Path(path))
    local = (cwd or Path.cwd()) / "grading.yaml"
    if local.is_file():
        return load_config(local)
    config = load_config(packaged_policy())
    config._source = f"{PACKAGED_SOURCE} (no grading.yaml in {local.parent})"
    return config


def load_config(path: Path) -> GradingConfig:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        config = GradingConfig.model_validate(data, context={"base": Path(path).resolve().parent})
    except ValidationError as err:
        raise ConfigError(f"{path}: {_describe_error(err)}") from None
    config._source = str(Path(path).resolve())
    return config
