"""The registry of exercises: the lecture's, in order, plus those a course defines in files of its own.

`EXERCISES` maps id -> Exercise. The built-in ones are listed below (explicit order, as pytest's
`default_plugins`); a grading.yaml's `definitions:` names more (files outside the package, each
holding `EXERCISE = Exercise(...)`), which `load_definition` imports by path and registers. The
definitions are the instructor's code, trusted like the package; they run only in the grading
process, never in the sandbox.

A process grades one course at a time: loading a definition again (the same course's config read
twice, or another course's exercise of that id) replaces the earlier one; a built-in id can never be
replaced.
"""

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import replace
from pathlib import Path

from grader.course.exercises import atomic, batchnorm, cross_entropy, embedding, train
from grader.course.spec import Exercise, LectureSection

BUILT_IN = (atomic.EXERCISE, cross_entropy.EXERCISE, batchnorm.EXERCISE, embedding.EXERCISE, train.EXERCISE)

EXERCISES: dict[str, Exercise] = {ex.id: ex for ex in BUILT_IN}


class DefinitionError(Exception):
    """A course's exercise definition file cannot be used; the message names the file (and line)."""


def _where(path: Path, err: BaseException) -> str:
    """`file line N`: the deepest line of the definition file in the error's traceback."""
    if isinstance(err, SyntaxError) and err.lineno:
        return f"{path} line {err.lineno}"
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path]
    return f"{path} line {lines[-1]}" if lines else str(path)


def graded_by_training() -> Exercise | None:
    """The exercise the lecture notebook's training loop is graded as: its trajectory check, in the lecture."""
    return next((ex for ex in EXERCISES.values()
                 if ex.trajectory is not None and isinstance(ex.lecture, LectureSection)), None)


def load_definition(path: Path) -> Exercise:
    """Import a definition file by path and return its EXERCISE (registered); DefinitionError if unusable."""
    path = Path(path).resolve()
    if not path.is_file():
        raise DefinitionError(f"exercise definition file not found: {path}")
    if path.suffix != ".py":
        raise DefinitionError(f"{path}: an exercise definition is a Python file (.py)")
    name = "grader_course_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its build function may be pickled or looked up by module (batch grading)
    try:
        spec.loader.exec_module(module)
    except BaseException as err:  # noqa: BLE001 - the instructor's code: any error, reported with its line
        del sys.modules[name]
        message = err.msg if isinstance(err, SyntaxError) else str(err)
        raise DefinitionError(f"{_where(path, err)}: {type(err).__name__}: {message}") from None
    exercise = getattr(module, "EXERCISE", None)
    if exercise is None:
        raise DefinitionError(f"{path}: defines no EXERCISE (expected EXERCISE = Exercise(...))")
    if not isinstance(exercise, Exercise):
        raise DefinitionError(f"{path}: EXERCISE is a {type(exercise).__name__}, not an Exercise(...) "
                              "from grader.course.spec")
    if exercise.build is None:
        raise DefinitionError(f"{path}: exercise {exercise.id!r} has no build=...: a function (case, generator) -> "
                              "(inputs, references) that makes its cases")
    builtin = next((ex for ex in BUILT_IN if ex.id == exercise.id), None)
    if builtin is not None:
        raise DefinitionError(f"{path}: exercise id {exercise.id!r} is already the lecture's (built in): "
                              "choose another id")
    exercise = replace(exercise, origin=str(path))
    EXERCISES[exercise.id] = exercise
    return exercise


def load_definitions(paths: list[Path]) -> list[Exercise]:
    """Every file of a course's `definitions`; two files may not define the same id."""
    loaded: dict[str, Exercise] = {}
    for path in paths:
        exercise = load_definition(path)
        if exercise.id in loaded:
            raise DefinitionError(f"{exercise.origin}: exercise id {exercise.id!r} is also defined in "
                                  f"{loaded[exercise.id].origin}")
        loaded[exercise.id] = exercise
    return list(loaded.values())
