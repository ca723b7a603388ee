"""Cascades, where each check is one step of the lecture's backward pass (its exercise 1).

A step can be right given the student's own wrong upstream answers (replayed
with the local rules of grader.course.steps): the error is upstream, "First
fix dX", X being the first wrong gradient it depends on. Also named here: a
gradient equal to the student's gradient of a later step that reads it (one
tensor under two names, a missing .clone()), and the chain rule forgotten.
Only for an exercise that `cascades`, and only at checks that are steps.
"""

from itertools import product

import torch

from grader.course.mlp import ATOMIC
from grader.course.steps import ANCESTORS, STEPS
from grader.feedback.labels import LABELS
from grader.feedback.patterns import Diagnosis, Patterns


class Cascades(Patterns):
    """The step-by-step strategies, on one case."""

    def root(self, check: str) -> str | None:
        """The first failing gradient, in backward order, that `check` is computed from."""
        return next((a for a in ATOMIC if a in ANCESTORS[check] and self.failed(a)), None)

    def cascade(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        """The step is right given the student's own (wrong) upstream answers: the error is upstream."""
        upstream = STEPS[check].upstream
        failing = [u for u in upstream if self.failed(u)]
        if not failing:
            return None
        root = self.root(check) or failing[0]
        usable = [u for u in upstream if self.raw(u) is not None]
        for picks in product((False, True), repeat=len(usable)):
            chosen = {u for u, p in zip(usable, picks) if p}
            if not chosen & set(failing):
                continue
            grads = dict(self.true)
            grads.update({u: self.raw(u) for u in chosen})
            expected = self.local_rule(check, grads)
            if expected is not None and self.close(s, expected, self.refs[check]):
                wrong = sorted(chosen & set(failing), key=self.order.__getitem__)
                given = " and ".join(f"d{u}" for u in wrong)
                return Diagnosis("cascade", f"First fix d{root}: this step is right, given your {given}.",
                                 LABELS["cascade"], root=root, given_upstream=True)
        return None

    def alias(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        """d`check` came back equal to the student's gradient of a step that reads it: one tensor, two names."""
        ref = self.refs[check]
        for later in ATOMIC[ATOMIC.index(check) + 1:]:
            if check not in STEPS[later].upstream or (mine := self.student(later)) is None:
                continue
            if mine.shape == ref.shape and self.close(s, mine, ref) and not self.close(ref.to(s.dtype), mine, ref):
                return Diagnosis("alias", f"d{check} came back equal to your d{later}: when d{later} starts as "
                                 f"d{check} itself (d{later} = d{check}, no .clone()), the in-place += on d{later} "
                                 f"changes d{check} too. Start d{later} from a copy: d{check}.clone() (or the full "
                                 "product of its rule).", LABELS["alias"], at=later)
        return None

    def chain_rule(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        """The step's local derivative alone: the incoming gradient was never multiplied in."""
        for u in STEPS[check].upstream:
            grads = dict(self.true)
            grads[u] = torch.ones_like(self.true[u])
            local = self.local_rule(check, grads)
            if local is not None and self.close(s, local, self.refs[check]) \
                    and not self.close(self.refs[check].to(s.dtype), local, self.refs[check]):
                return Diagnosis("chain", f"d{check} is only the local derivative of this step: multiply it by "
                                 f"the incoming gradient d{u} (chain rule).", LABELS["chain"])
        return None

    def upstream_too(self, check: str) -> Diagnosis | None:
        """The step and an earlier gradient are both wrong: fix the earlier one first."""
        failing = [u for u in STEPS[check].upstream if self.failed(u)]
        if not failing:
            return None
        root = self.root(check) or failing[0]
        return Diagnosis("cascade", f"d{check} is computed from d{root}, which is wrong: fix d{root} "
                         "first, then check this step again.", LABELS["cascade"], root=root)
