"""The lecture notebook's graded sections, read from the exercise definitions' `lecture=` field.

An exercise with `LectureSection(number, ...)` is graded from the cells of that section (or, when it
has a trajectory check, from the training loop); one with `NotInLecture(reason)` reports the reason.
Read when a notebook is planned, so an exercise a course registers later takes part too.
"""

from grader.course.registry import EXERCISES, graded_by_training
from grader.course.spec import Exercise, LectureSection


def _sections() -> list[tuple[Exercise, LectureSection]]:
    return [(ex, ex.lecture) for ex in EXERCISES.values() if isinstance(ex.lecture, LectureSection)]


def graded() -> dict[int, str]:
    """Exercise number -> exercise id, for the sections graded from their cells (not the training loop)."""
    out: dict[int, str] = {}
    for ex, section in _sections():
        if ex.trajectory is None:
            out.setdefault(section.number, ex.id)  # the first definition of a number wins
    return out


def training_loop() -> Exercise | None:
    """The exercise graded from the notebook's training loop (the lecture's exercise 4), if any."""
    return graded_by_training()


def expected(ex_id: str) -> tuple[str, ...]:
    """The answers a section's cells define, by the name of their tensor (`logits` for dlogits)."""
    return EXERCISES[ex_id].gradient_checks


def given(ex_id: str) -> tuple[str, ...]:
    return EXERCISES[ex_id].lecture.given


def found_by(ex_id: str, many: bool = False) -> str:
    """`assigns its gradients`, or for several cells `assign its gradients`."""
    what = EXERCISES[ex_id].lecture.found_by
    verb, _, rest = what.partition(" ")
    return f"{verb.removesuffix('s')} {rest}".strip() if many else what


def not_found(ex_id: str) -> str:
    """Why no cell was taken for the section, as the report says it."""
    section = EXERCISES[ex_id].lecture
    return (f"no '# Exercise {section.number}' header, and "
            + (section.not_found or f"no cell {section.found_by}"))
