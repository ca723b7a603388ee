"""Shared fixtures: the repository's config, its cases built once, and submission builders."""

import shutil
from pathlib import Path

import pytest

from grader.config import load_config
from grader.pipeline import build_cases, grade

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
ASSIGNMENTS = ROOT / "assignments"
TESTS = Path(__file__).resolve().parent  # this folder: the test modules sit in folders below it
FIXTURES = TESTS / "fixtures"
VARIANTS = FIXTURES / "variants"
SECRET = "test-secret-not-for-production"

# The course's facts, from grading.yaml (never hard-coded in a test): its exercises in order, their points, the total.
COURSE = load_config(ROOT / "grading.yaml")
EXERCISE_IDS = tuple(COURSE.exercises)
POINTS = {ex_id: ex.points for ex_id, ex in COURSE.exercises.items()}
MAX_SCORE = sum(POINTS.values())


@pytest.fixture(scope="module", autouse=True)
def _own_registry():
    """A course's definitions register its exercises process-wide: each test module starts and ends with the
    lecture's only, so one module's course never shows up in another's."""
    from grader.course.registry import EXERCISES

    before = dict(EXERCISES)
    yield
    EXERCISES.clear()
    EXERCISES.update(before)


@pytest.fixture(scope="session")
def config():
    return load_config(ROOT / "grading.yaml")


@pytest.fixture(scope="session")
def max_score():
    """The course's total: every exercise's points in grading.yaml."""
    return MAX_SCORE


@pytest.fixture(scope="session")
def points():
    """Points per exercise id, from grading.yaml."""
    return dict(POINTS)


@pytest.fixture(scope="session")
def public_cases(config):
    return build_cases(config, None)


@pytest.fixture(scope="session")
def all_cases(config):
    """Public and hidden cases, with the test secret."""
    return build_cases(config, SECRET)


def make_submission(folder: Path, replace: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A copy of the reference solutions with some files replaced (name -> source) or dropped."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in SOLUTIONS.glob("*.py"):
        if src.name not in drop:
            shutil.copy(src, folder / src.name)
    for name, source in (replace or {}).items():
        (folder / name).write_text(source)
    return folder


@pytest.fixture
def submission(tmp_path):
    """`submission(replace={...}, drop=(...))` -> a folder to grade."""
    counter = iter(range(1000))

    def build(replace=None, drop=()):
        return make_submission(tmp_path / f"sub{next(counter)}", replace, drop)

    return build


@pytest.fixture
def grade_it(config, public_cases):
    """Grade a folder with the public cases built once per session (fast)."""
    def run(path, **kwargs):
        kwargs.setdefault("cases", public_cases)
        return grade(Path(path), kwargs.pop("config", config), **kwargs)

    return run


def scores_by_check(report, ex_id):
    return {c.name: c.score == c.max_score for c in report.exercise(ex_id).checks}


def failing_checks(report, ex_id):
    return {c.name for c in report.exercise(ex_id).checks if c.score < c.max_score}
