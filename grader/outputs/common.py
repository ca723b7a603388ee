"""What every view of a Report says the same way: the single copy of each.

Gradient labels (`dW1`, the SGD trajectory), the exercise statuses that stop a file before its
gradients, the order of the backward pass, the first gradient to fix, a check's verdict on the graph,
and the feedback line under a failing gradient. Read from a finished Report only; torch-free.
"""

from grader.course.mlp import ATOMIC
from grader.course.spec import TRAJECTORY
from grader.feedback.labels import LABELS
from grader.report import CheckResult, ExerciseResult

# Exercise statuses about the whole file, not one gradient: nothing of it ran, or it was not allowed.
STOPPED = ("not_submitted", "error", "timeout", "crashed", "not_allowed")
# diagnosis.LABELS["cascade"] (kept in sync by a test; importing diagnosis would import torch)
UPSTREAM_KIND = LABELS["cascade"]  # a hidden case that only repeats an upstream mistake
NOT_ATTEMPTED = {"missing", "not_implemented", "not_submitted"}  # case statuses of a gradient not written yet
_ORDER = {name: i for i, name in enumerate(ATOMIC)}


def gradient_name(name: str) -> str:
    """A check as the lecture names its gradient: `dW1`; the SGD check is `trajectory`."""
    return name if name == TRAJECTORY else f"d{name}"


def check_label(check: CheckResult) -> str:
    """A check in the CI destinations' test names: `dW1`, `SGD trajectory`."""
    return "SGD trajectory" if check.name == TRAJECTORY else f"d{check.name}"


def backward_order(check: CheckResult) -> int:
    """Sort key: the order of the backward pass (checks outside it, such as the trajectory, last)."""
    return _ORDER.get(check.name, len(_ORDER))


def first_failing(ex: ExerciseResult) -> CheckResult | None:
    """The first failing check in the order of the backward pass (the screen's and Markdown's "first to fix")."""
    return min((c for c in ex.checks if c.status != "passed"), key=backward_order, default=None)


def verdict(ex: ExerciseResult, check: CheckResult) -> str:
    """A check on the graph: right, wrong, cascade (right given the student's upstream), not attempted, not allowed."""
    if check.status == "passed":
        return "right"
    statuses = {c.status for c in check.cases}
    if ex.status == "not_allowed" or statuses == {"not_allowed"}:
        return "not_allowed"
    if ex.status == "not_submitted" or (statuses and statuses <= NOT_ATTEMPTED):
        return "not_attempted"
    if check.cascade_of:
        return "cascade"
    return "wrong"


def first_to_fix(ex: ExerciseResult) -> CheckResult | None:
    """The first check, in backward order, that is wrong because of its own step (not a cascade): the graph's mark."""
    if ex.status in ("passed", "not_submitted"):
        return None
    own = [c for c in ex.checks if verdict(ex, c) in ("wrong", "not_allowed", "not_attempted")]
    return min(own, key=lambda c: (verdict(ex, c) == "not_attempted", backward_order(c)), default=None)


def hidden_line(check: CheckResult) -> str | None:
    """"k of m hidden cases passed", with the generic kinds of their failures: never a value."""
    hidden = [c for c in check.cases if c.visibility == "hidden"]
    failed = [c for c in hidden if not c.passed]
    if not failed:
        return None
    if all(c.hint == f"likely cause: {UPSTREAM_KIND}" for c in failed):
        return None  # says nothing the public hint and the cases column do not
    kinds = []
    for case in failed:
        kind = (case.hint or "").removeprefix("likely cause: ")
        if kind and kind not in kinds:
            kinds.append(kind)
    why = f" (likely cause: {'; '.join(kinds)})" if kinds else ""
    return f"Hidden cases: {len(hidden) - len(failed)} of {len(hidden)} passed{why}."


def feedback(check: CheckResult) -> str:
    """What to show under a failing gradient: its hint (else its message), and the hidden cases' counts."""
    if not check.hint:
        return check.message  # already says "k of m hidden cases passed"
    public_failed = any(c.visibility == "public" and not c.passed for c in check.cases)
    hidden = hidden_line(check) if public_failed else None  # else the hint is about the hidden cases
    return f"{check.hint} {hidden}" if hidden else check.hint
