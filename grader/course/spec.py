"""The one schema of an exercise: what the student writes, what is checked, how a case is built.

An exercise is one module holding `EXERCISE = Exercise(...)` (grader/course/exercises/ for the
lecture's, or a course's own definition file named by its grading.yaml). Everything the grader
needs to know about it is here, as data and properties: no other module tests an exercise id.

Kept free of torch (and of the lecture's model) so that the command line and the config load fast;
a `build` function imports torch when it runs.
"""

import functools
import importlib
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
TRAJECTORY = "trajectory"  # the name of a TrajectoryCheck unless it is given another


class Check(str):
    """A check of an exercise, named as the gradient it compares (the tensor's name without the `d`).

    A `str`, so a check keys the config's `check_points`, the report and the references as its name.
    """

    kind = "check"

    @property
    def name(self) -> str:
        return str(self)

    def plan(self, config) -> dict:
        """What the worker needs to run this check (JSON): its kind and name."""
        return {"kind": self.kind, "name": self.name}


class GradientCheck(Check):
    """One gradient the student's function returns, compared with autograd's on every case."""

    kind = "gradient"


class TrajectoryCheck(Check):
    """A few steps of SGD on the lecture's model with the student's gradients, against autograd's.

    The student's function is called again at each step (as `backward_fast` in the lecture's
    exercise 4); `params` are the parameters it updates. The number of steps and the learning rate
    are the course's policy (grading.yaml's `train`).
    """

    kind = "trajectory"

    def __new__(cls, name: str = TRAJECTORY, params: tuple[str, ...] = ()):
        self = super().__new__(cls, name)
        self.params = tuple(params)
        return self

    def __reduce__(self):  # pickled with its parameters (batch grading sends exercises to other processes)
        return (type(self), (str(self), self.params))

    def plan(self, config) -> dict:
        return {"kind": self.kind, "name": self.name, "params": list(self.params),
                "steps": config.train.steps, "lr": config.train.lr}


@dataclass(frozen=True)
class LectureSection:
    """Where the exercise sits in the lecture's own notebook (its "Exercise N" section).

    Its cells are graded like the exercise's file: they must define the `d...` variable of every
    gradient check; an exercise with a TrajectoryCheck is graded from the notebook's training loop
    (the lecture's exercise 4). The defaults fit a section found by its `# Exercise N` header alone.
    """

    number: int
    given: tuple[str, ...] = ()          # true gradients the grader puts in the section's namespace (`dhpreact`)
    found_by: str = "defines its answers"  # what its cells do, as the grader recognises them (for notes)
    not_found: str = ""                  # why no cell was taken for it; default: "no cell <found_by>"


@dataclass(frozen=True)
class NotInLecture:
    """The exercise has no section in the lecture's notebook: such a submission reports this reason."""

    reason: str = "this exercise is not part of the lecture's notebook, so it is not graded in this format"


@dataclass(frozen=True)
class Exercise:
    id: str                              # lower-case identifier; the key in grading.yaml's `exercises`
    title: str
    file: str                            # the file the student submits (stub in assignments/, key in solutions/)
    function: str                        # the function in it that the grader calls
    checks: tuple[Check, ...]            # GradientCheck / TrajectoryCheck in the backward pass's order (a plain
    #                                      name is a GradientCheck)
    tensor_args: tuple[str, ...]         # tensors passed by keyword, from the case's inputs
    int_args: tuple[str, ...] = ()       # ints passed by keyword, from the case (`n`, `vocab_size`)
    returns_dict: bool = True            # a dict of gradients keyed by check name, or one tensor
    build: Callable | str | None = None  # (case, generator) -> (inputs, references); or "module:function"
    lecture: LectureSection | NotInLecture = NotInLecture()
    lesson: str | None = None            # data files for release (paths); None: a generic one
    check_cell: str | None = None
    misconceptions: tuple = ()           # the exercise's catalogue of known mistakes (grader.feedback)
    worked: Any = None                   # its worked answer, a Worked(rule, code) (grader.course.misconception):
    #                                      the hint levels' rule and the near-miss search; None: neither
    # Behaviour, as properties of the exercise rather than tests of its id:
    cascades: bool = False               # each check is one step of the backward pass: an upstream error
    #                                      explains the failures below it (the lecture's exercise 1)
    path: tuple[str, ...] = ()           # the gradients its backward computes on the way to its checks
    private_inputs: tuple[str, ...] = () # inputs that are autograd answers (e.g. dhpreact): never in a file
    #                                      another exercise's child could read; they go down the worker's pipe
    private_inputs_safe_for: tuple[str, ...] = ()  # exercises that may run after this one in a shared child:
    #                                      its private inputs give none of their answers away (grader.sandbox.sharing)
    origin: str = field(default="", compare=False)  # the definition's file (set by the loader), for messages

    def __post_init__(self):
        def fail(problem: str):
            raise TypeError(f"exercise {self.id!r}: {problem}")

        if not isinstance(self.id, str) or not ID.match(self.id):
            raise TypeError(f"exercise id {self.id!r} must be lower-case letters, digits and _ (at most 40)")
        for name in ("title", "file", "function"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                fail(f"{name} must be a non-empty string")
        if not self.file.endswith(".py") or "/" in self.file or not self.module.isidentifier():
            fail(f"file {self.file!r} must be a module name ending in .py, without a folder")
        if not self.function.isidentifier() or keyword.iskeyword(self.function):
            fail(f"function {self.function!r} is not a Python identifier")
        if isinstance(self.checks, tuple):  # a plain name is a gradient check
            object.__setattr__(self, "checks", tuple(c if isinstance(c, Check) else GradientCheck(c)
                                                     if isinstance(c, str) else c for c in self.checks))
        for name in ("tensor_args", "int_args", "checks", "path", "private_inputs", "private_inputs_safe_for",
                     "misconceptions"):
            value = getattr(self, name)
            if isinstance(value, (list, str)) or not isinstance(value, tuple):
                fail(f"{name} must be a tuple")
        args = (*self.tensor_args, *self.int_args)
        if not all(isinstance(a, str) and a.isidentifier() for a in args) or len(set(args)) != len(args):
            fail("tensor_args and int_args must be distinct identifiers")
        if not self.checks or not all(isinstance(c, Check) for c in self.checks):
            fail("checks must be GradientCheck(...) / TrajectoryCheck(...), at least one")
        if len(set(self.checks)) != len(self.checks):
            fail("two checks have the same name")
        if not self.returns_dict and len(self.gradient_checks) != 1:
            fail("a function that returns one tensor has exactly one GradientCheck")
        if not (self.build is None or callable(self.build) or (isinstance(self.build, str) and ":" in self.build)):
            fail("build must be a function (case, generator) -> (inputs, references), or 'module:function'")
        if not isinstance(self.lecture, (LectureSection, NotInLecture)):
            fail("lecture must be LectureSection(number) or NotInLecture(reason)")
        if isinstance(self.lecture, LectureSection) and (
                not isinstance(self.lecture.number, int) or self.lecture.number < 1
                or not isinstance(self.lecture.given, tuple)):
            fail("LectureSection needs an exercise number >= 1 and `given` as a tuple")
        if not set(self.private_inputs) <= set(self.tensor_args):
            fail("private_inputs must be tensor_args")
        if not all(isinstance(i, str) and ID.match(i) for i in self.private_inputs_safe_for):
            fail("private_inputs_safe_for must be exercise ids")

    @property
    def module(self) -> str:
        return self.file.removesuffix(".py")

    @functools.cached_property  # scoring asks for every case of every submission
    def check_names(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.checks)

    @functools.cached_property
    def gradient_checks(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.checks if isinstance(c, GradientCheck))

    @property
    def trajectory(self) -> TrajectoryCheck | None:
        return next((c for c in self.checks if isinstance(c, TrajectoryCheck)), None)

    def data_file(self, name: str | None) -> Path | None:
        """A data file of the exercise (`lesson`, `check_cell`): relative to its definition file, or, for the
        lecture's exercises, to grader/course/exercises/. None stays None (release uses a generic one)."""
        if name is None:
            return None
        return (Path(self.origin).parent if self.origin else Path(__file__).parent / "exercises") / name

    def builder(self) -> Callable[[Any, Any], tuple[dict, dict]]:
        if self.build is None:
            raise TypeError(f"exercise {self.id!r} has no build: its cases cannot be made")
        if callable(self.build):
            return self.build
        module, _, name = self.build.partition(":")
        return getattr(importlib.import_module(module), name)

    def answer_keys(self, steps: int) -> set[str]:
        """Every answer the worker may send back for this exercise (a hidden case's keep no other)."""
        keys = set(self.gradient_checks)
        if self.trajectory is not None:
            keys |= {f"step{s}.{p}" for s in range(steps) for p in self.trajectory.params}
        return keys

    def plan(self, config) -> dict:
        """The exercise as the worker sees it (JSON): the contract and the check kinds, no course code."""
        return {"id": self.id, "module": self.module, "function": self.function,
                "tensor_args": list(self.tensor_args), "int_args": list(self.int_args),
                "returns_dict": self.returns_dict, "gradient_checks": list(self.gradient_checks),
                "private_inputs": list(self.private_inputs),
                "private_inputs_safe_for": list(self.private_inputs_safe_for),
                "checks": [c.plan(config) for c in self.checks]}

