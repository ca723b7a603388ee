"""Known misconceptions: does the student's answer match a wrong formula of the exercise's catalogue?

Each exercise's definition lists its entries (grader.course.misconception;
the lecture's are in grader.course.mistakes). An entry builds, from the
case's true gradients (and, where each step is its own check, from the
student's own upstream answers too), the gradient that the wrong formula
gives; when the student's answer matches it on the grader's tolerance and
the truth does not, the entry's message is the hint. An entry sits at a check
of the exercise, or at a step of the lecture's backward pass on a one-go
exercise's path: its wrong gradient is then carried down to the checks with
the lecture's local rules (grader.course.steps.propagate).

An entry that raises on the truth is broken, not a near miss: it warns
(grader.feedback.labels.FeedbackWarning, an error in the test suite).
"""

import warnings

import torch

from grader.course.misconception import Misconception
from grader.course.spec import Exercise
from grader.course.steps import DESCENDANTS, STEPS, Vars, propagate
from grader.feedback.labels import FeedbackWarning
from grader.feedback.patterns import Diagnosis, Patterns


def problems(ex: Exercise) -> list[str]:
    """What is wrong with the exercise's catalogue as data (empty when it is usable)."""
    out, seen = [], set()
    for entry in ex.misconceptions:
        if not isinstance(entry, Misconception):
            out.append(f"exercise {ex.id}: {entry!r} is not a Misconception(...)")
            continue
        if entry.id in seen:
            out.append(f"exercise {ex.id}: two misconceptions are called {entry.id!r}")
        seen.add(entry.id)
        if entry.at not in ex.check_names and entry.at not in STEPS:
            out.append(f"exercise {ex.id}: misconception {entry.id!r} sits at d{entry.at}, which is neither a "
                       "check of the exercise nor a step of the lecture's backward pass: it can never apply")
    return out


def broken(ex: Exercise, entry: Misconception, what: str, err: Exception) -> None:
    warnings.warn(f"exercise {ex.id}: misconception {entry.id!r} {what}: {type(err).__name__}: {err}",
                  FeedbackWarning, stacklevel=3)


class Catalogue(Patterns):
    """The misconception strategy, on one case."""

    def applies(self, entry: Misconception, check: str) -> bool:
        if check == entry.at:
            return True
        # a one-go exercise computes the steps below `at` itself: the mistake shows at its checks
        return not self.ex.cascades and check in DESCENDANTS.get(entry.at, ())

    def wrong_gradients(self, entry: Misconception, check: str, grads: dict) -> list[torch.Tensor]:
        """The gradient(s) of `check` that the wrong formula of `entry` gives, from `grads`."""
        try:
            built = entry.build(Vars(self.forward, grads, self.ints))
        except Exception as err:  # noqa: BLE001 - reported below when the entry breaks on the truth itself
            if grads is self.true:
                broken(self.ex, entry, f"raised on case {self.case.spec.name}", err)
            return []  # (on the student's own upstream answers, a failure says nothing about the entry)
        built = [built] if isinstance(built, torch.Tensor) else list(built)
        if check == entry.at:
            return built
        out = []
        for i, value in enumerate(built):  # only from the true gradients: one-go exercises have no others
            key = (entry.id, i)
            if key not in self._propagated:
                try:
                    self._propagated[key] = propagate(self.forward, grads, self.ints, entry.at, value)
                except Exception as err:  # noqa: BLE001
                    broken(self.ex, entry, f"gives a d{entry.at} the backward pass cannot carry", err)
                    self._propagated[key] = None
            if self._propagated[key] is not None:
                out.append(self._propagated[key][check])
        return out

    def misconception(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        ref = self.refs[check]
        entries = [e for e in self.ex.misconceptions if self.applies(e, check)]
        # the mistake made at this very gradient first, then the nearest upstream ones
        entries.sort(key=lambda e: (e.at != check, -self.order.get(e.at, 0)))
        mixed = right = None
        if self.ex.cascades:  # the student's own answers for every other gradient
            mixed = dict(self.true)
            mixed.update({k: v for k in self.true if k != check and (v := self.student(k)) is not None})
            right = self.local_rule(check, mixed)
        for entry in entries:
            for wrong in self.wrong_gradients(entry, check, self.true):
                if self.close(s, wrong, ref) and not self.close(ref.to(s.dtype), wrong, ref):
                    return Diagnosis("misconception", entry.hint(check), entry.title, at=entry.at)
            if mixed is not None and check == entry.at:
                # the same local mistake, made on the student's own upstream answers
                for wrong in self.wrong_gradients(entry, check, mixed):
                    if self.close(s, wrong, ref) and (right is None or not self.close(right, wrong, ref)):
                        return Diagnosis("misconception", entry.hint(check), entry.title, at=entry.at)
        return None
