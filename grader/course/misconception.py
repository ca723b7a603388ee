"""What an exercise's definition tells the feedback: its known mistakes and its worked answer.

Data, free of torch (a `build` is code, but it runs only when the feedback
tries it): an exercise lists the `Misconception`s that apply to it and, if it
has one, its `Worked` answer. grader.feedback reads them from the exercise,
never from a table keyed by its id.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Misconception:
    """A known wrong formula: where it is made, how to build its gradient, what to tell the student.

    `build(x)` returns the wrong d`at` (or a list of variants) from `x`, a view of the case
    (grader.course.steps.Vars): `x.gamma` is a case input or a forward tensor, `x.dgamma` the
    true gradient of `gamma` (the exercise's own reference, or the lecture's model's), `x.n` an
    int of the case. `at` is a check of the exercise, or a step of the lecture's backward pass
    that a one-go exercise computes on its way to its checks (its `path`): the wrong gradient is
    then carried down to the checks with the lecture's local rules. `message` is the hint on
    d`at` itself; `downstream` (with `{check}`) the hint on a check computed from it. `title` is
    a short, generic name, the only part shown for hidden cases: no values, no shapes.
    """

    id: str
    at: str
    title: str
    build: Callable[[Any], Any]
    message: str
    downstream: str | None = None

    def hint(self, check: str) -> str:
        if check == self.at:
            return self.message
        if self.downstream:
            return self.downstream.format(check=check)
        return f"d{check} is what you get when d{self.at} has a known mistake: {self.message}"


@dataclass(frozen=True)
class Worked:
    """The exercise's answer as the lecture writes it, for the hint levels and the near-miss search.

    `rule` is the rule of the whole exercise in words (the second hint level), `code` the worked
    code (the third; grader.feedback.nearmiss edits it one slip at a time, and it runs with the
    exercise's arguments and `n` in scope, so it must compute every d<check>). `by_step`: the
    code is the lecture's steps one after the other, so a hint about one step quotes that step's
    local rule (grader.course.steps.RULES) rather than the whole exercise's.
    """

    rule: str = ""
    code: str = ""
    by_step: bool = False
