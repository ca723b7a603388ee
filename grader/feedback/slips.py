"""Near misses, on one case: the one slip in the worked code that gives the student's answer.

Where each check is a step (exercise 1), the slip is searched in that step's
local rule, run on the student's own upstream answers; in an exercise with a
`worked` answer (grader.course.misconception.Worked), in its whole worked
code, and it must give every answer of the case at once. The search itself
is grader.feedback.nearmiss.
"""

import warnings

import torch

from grader.course.steps import RULES, STEPS
from grader.feedback import nearmiss
from grader.feedback.labels import SLIP_LABELS
from grader.feedback.patterns import Diagnosis, Patterns


class Slips(Patterns):
    """The near-miss strategy, on one case."""

    def nearmiss(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        try:
            with warnings.catch_warnings():  # torch's warnings about a slip are not the student's
                warnings.simplefilter("ignore")
                return self._nearmiss(check, s)
        except Exception:  # noqa: BLE001 - a search that fails must not hide the generic patterns
            return None

    def _nearmiss(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        ref = self.refs[check]
        if self.ex.cascades:
            if check not in RULES:
                return None
            grads = dict(self.true)
            grads.update({k: v for k in self.true if k != check and (v := self.student(k)) is not None})
            values = {**self.forward, **{f"d{k}": v for k, v in grads.items() if k != check}, **self.ints}
            right = self.local_rule(check, grads)
            for slip in nearmiss.step_slips(check, values):
                wrong = slip.values.get(f"d{check}")
                if isinstance(wrong, torch.Tensor) and wrong.is_floating_point() and self.close(s, wrong, ref) \
                        and (right is None or not self.close(right, wrong, ref)):
                    return self._slip(slip, check)
            return None
        slip = self.one_go_slip()
        return self._slip(slip, check) if slip is not None else None

    def one_go_slip(self) -> "nearmiss.Slip | None":
        """The one slip of the exercise's worked code that gives every answer of this case (searched once)."""
        if self._one_go is not None:
            return self._one_go or None
        self._one_go = False
        worked = self.ex.worked
        if worked is None or not worked.code:
            return None
        mine = {c: t for c in self.ex.gradient_checks if (t := self.raw(c)) is not None}
        wrong = [c for c in mine if self.failed(c)]
        if not wrong:
            return None
        values = nearmiss.one_go_values(self.forward, self.ints, self.ex.tensor_args)
        # (a gradient that is zero whatever the slip, like db1, says nothing about where it is)
        right = {f"d{c}" for c in mine if not self.failed(c) and float(self.refs[c].abs().max()) > self.floor}
        for slip in nearmiss.slips(worked.code, values, {f"d{c}" for c in wrong}, right):
            got = {c: slip.values.get(f"d{c}") for c in mine}
            if all(isinstance(v, torch.Tensor) and v.is_floating_point() and self.close(mine[c], v, self.refs[c])
                   for c, v in got.items()) and not all(self.close(self.refs[c], got[c], self.refs[c]) for c in wrong):
                self._one_go = slip
                return slip
        return None

    def _slip(self, slip: "nearmiss.Slip", check: str) -> Diagnosis:
        at = slip.at if slip.at in STEPS else check
        message = nearmiss.nudge(slip, check, self.ex.cascades)
        return Diagnosis("nearmiss", message, SLIP_LABELS[slip.edit.kind], at=at)
