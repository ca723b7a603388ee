"""What a hint can escalate to: the local rule of the step at fault, then its worked expression.

A diagnosed mistake offers up to three levels: a nudge (where to look: the
diagnosis's own message), the rule (the derivative of that step of the
forward pass, in the lecture's notation, or the whole exercise's rule), then
the worked expression (the lecture's code). The step's rules are
grader.course.steps.RULES; an exercise computed in one go has its own
(`Exercise.worked`). The worked code is also what grader.feedback.nearmiss
mutates to find a student's single slip, so it is written as the lecture
writes it, and a test runs it against autograd.
"""

from grader.course.spec import Exercise
from grader.course.steps import RULES


def _worked(code: str) -> str:
    return "The worked expression: " + "; ".join(code.splitlines())


def levels(first: str, ex: Exercise, at: str | None) -> list[str]:
    """The escalating hints of a mistake at gradient `at`: `first`, then the rule and the worked code."""
    out = [first]
    worked = ex.worked
    by_step = ex.cascades or (worked is not None and worked.by_step)
    if by_step and at in RULES:
        forward, rule, code = RULES[at]
        out += [f"The local rule: {forward}; {rule}.", _worked(code)]
    elif not ex.cascades and worked is not None and worked.code:
        out += [f"The rule: {worked.rule}.", _worked(worked.code)]
    return out
