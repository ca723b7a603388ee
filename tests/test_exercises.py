"""Every registered exercise of the course, one parametrised test each: what any exercise must satisfy.

The solutions and the stubs are each graded once (module-scoped), then every exercise is checked in them.
Release round-trips (ex-lecture) and "each misconception is hit by a feedback fixture" (ex-feedback)
belong here too, parametrised the same way over `COURSE_EXERCISES`.
"""

import pytest

from conftest import ASSIGNMENTS, EXERCISE_IDS, POINTS, SOLUTIONS
from grader.course.registry import EXERCISES
from grader.course.spec import LectureSection, NotInLecture

COURSE_EXERCISES = [EXERCISES[ex_id] for ex_id in EXERCISE_IDS]


@pytest.fixture(scope="module")
def solved(config, public_cases):
    from grader.pipeline import grade

    return grade(SOLUTIONS, config, cases=public_cases)


@pytest.fixture(scope="module")
def stubs(config, public_cases):
    from grader.pipeline import grade

    return grade(ASSIGNMENTS, config, cases=public_cases)


def test_the_course_grades_registered_exercises_only():
    assert EXERCISE_IDS and set(EXERCISE_IDS) <= set(EXERCISES)


@pytest.mark.parametrize("ex", COURSE_EXERCISES, ids=lambda ex: ex.id)
def test_its_solution_scores_full(ex, solved):
    result = solved.exercise(ex.id)
    assert result.status == "passed", result.message
    assert result.score == result.max_score == POINTS[ex.id]
    assert [c.name for c in result.checks] == list(ex.check_names)
    assert all(c.passed_cases == c.total_cases > 0 for c in result.checks)


@pytest.mark.parametrize("ex", COURSE_EXERCISES, ids=lambda ex: ex.id)
def test_its_stub_scores_0_as_not_implemented(ex, stubs):
    result = stubs.exercise(ex.id)
    assert result.score == 0 and result.max_score == POINTS[ex.id]
    assert result.status == "failed" and "not implemented" in result.message, result.message
    assert {r.status for c in result.checks for r in c.cases} == {"not_implemented"}


@pytest.mark.parametrize("ex", COURSE_EXERCISES, ids=lambda ex: ex.id)
def test_its_spec_is_whole(ex, public_cases):
    """The files of the contract exist, and every case has the exercise's inputs and a reference per check."""
    assert (SOLUTIONS / ex.file).is_file() and (ASSIGNMENTS / ex.file).is_file()
    assert isinstance(ex.lecture, (LectureSection, NotInLecture))
    assert set(ex.private_inputs) <= set(ex.tensor_args)
    for case in public_cases:
        assert set(ex.tensor_args) <= set(case.inputs)
        assert set(ex.check_names) == set(case.references[ex.id])
