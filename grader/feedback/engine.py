"""The feedback engine: a hint for every failing check, from the strategies in their order.

Runs in the grading process, on the student's decoded answers, after the
comparison. For a failing gradient of one case, in this order:

1. cascades, where each check is one step (`Exercise.cascades`,
   grader.feedback.cascades): the step is right given the student's own
   upstream answers, so the error is upstream: "First fix dX";
2. the exercise's own catalogue of known misconceptions (`Exercise.misconceptions`,
   grader.feedback.catalogue), at its own checks and, for a one-go exercise
   on the lecture's model, at the steps on its path;
3. where each check is a step, a gradient equal to the student's gradient of
   a later step (a missing .clone()), and the chain rule forgotten;
4. the generic patterns (grader.feedback.patterns), then near misses
   (grader.feedback.slips): the one slip in the worked code that gives the
   student's answer; only then the vague patterns, which name no cause.

A case where the function raised gets, on every check, what failed on the
line that raised and its repair, when one edit confirms it. Every diagnosis
offers escalating levels (grader.feedback.hint_levels). A check's summary
adds what only shows across cases: right on the lecture's shape but wrong
(or crashing) on the others. Hidden cases get a fixed label per kind of
mistake (`Diagnosis.label`), never a value or a shape.

Nothing here tests an exercise's id: what differs between exercises is read
from their definitions. A strategy that breaks on a case costs the hint, never
the grade, and warns (FeedbackWarning: an error in the test suite).
"""

import re
import warnings
from collections import Counter

import torch

from grader.config import ShapeSpec
from grader.course.mlp import LECTURE_SHAPE
from grader.course.spec import Exercise
from grader.course.steps import RULES, STEPS
from grader.feedback import nearmiss
from grader.feedback.cascades import Cascades
from grader.feedback.catalogue import Catalogue, problems
from grader.feedback.hint_levels import levels as hint_levels
from grader.feedback.labels import LABELS, SLIP_LABELS, FeedbackWarning
from grader.feedback.patterns import CONFIRMED, Diagnosis, backward_order, shape_text, truth
from grader.feedback.slips import Slips

HARDCODED_SIZES = "use n (or a tensor's .shape) instead of 32, 27, 10, 64 or 3"
LECTURE_SIZES = {*LECTURE_SHAPE.values(), LECTURE_SHAPE["block"] * LECTURE_SHAPE["n_embd"]}


def is_lecture_shape(spec: ShapeSpec) -> bool:
    return all(getattr(spec, k) == v for k, v in LECTURE_SHAPE.items())


class CaseDiagnosis(Catalogue, Cascades, Slips):
    """One case of one exercise: every strategy, tried in the engine's order."""

    def diagnose(self, check: str) -> Diagnosis | None:
        r = self.results[check]
        if r.passed:
            return None
        if check == self.ex.trajectory:
            failing = [c for c in self.ex.gradient_checks if self.failed(c)]
            first = min(failing, key=self.order.__getitem__) if failing else None  # in backward order
            if first:
                return Diagnosis("trajectory", f"The SGD steps use your gradients: fix d{first} first.",
                                 LABELS["trajectory"], root=first)
            if r.status in ("wrong_values", "not_finite"):
                return Diagnosis("trajectory_state", "Your gradients are right on the grading batch, but the "
                                 f"SGD steps with them left the autograd path: does {self.ex.function} modify "
                                 "its inputs in place or keep state between calls?", LABELS["trajectory_state"])
            return None
        s = self.answers.get(check)
        if r.status == "not_finite":
            return self.not_finite(check, s)
        if r.status not in ("wrong_values", "wrong_shape"):
            return None
        if s is None or not s.is_floating_point():
            if r.status == "wrong_shape":
                want = shape_text(self.refs[check].shape)
                return Diagnosis("wrong_shape", f"d{check} has the wrong shape: a gradient has the shape of "
                                 f"its tensor, {want}.", LABELS["wrong_shape"])
            return None
        steps = self.ex.cascades and check in STEPS  # each check one step of the lecture's backward pass
        found = ((self.cascade(check, s) if steps else None)
                 or self.misconception(check, s)
                 or (self.alias(check, s) if steps else None)
                 or (self.chain_rule(check, s) if steps else None))
        if found:
            return found
        if steps and any(self.failed(u) for u in STEPS[check].upstream):
            return self.nearmiss(check, s) or self.upstream_too(check)
        # a named pattern (sign, factor n, transposed, ...) first; a slip of the rule before a vague one
        found = self.generic(check, s)
        if found is not None and not found.weak:
            return found
        return self.nearmiss(check, s) or found


class Diagnoser:
    """Hints for one exercise: `case()` for each case as it is scored, then `summary()` per check."""

    def __init__(self, exercise: Exercise, cases: list, tolerance: float):
        for problem in problems(exercise):
            warnings.warn(problem, FeedbackWarning, stacklevel=2)
        self.ex = exercise
        self.order = backward_order(exercise)
        self.cases = cases
        self.tol = tolerance
        self.found: dict[tuple[str, str], Diagnosis | None] = {}
        self.levels: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}  # public case -> the last line of the traceback, when it raised

    def _levels(self, found: Diagnosis, check: str) -> list[str]:
        if found.levels:
            return found.levels
        if found.kind in ("cascade", "trajectory", "trajectory_state", "not_finite"):
            return [found.message]  # the hint points elsewhere: the rule to learn is that gradient's
        return hint_levels(found.message, self.ex, found.at or check)

    def _set(self, case, check: str, result, found: Diagnosis | None) -> None:
        self.found[(case.spec.name, check)] = found
        if found is None:
            return
        if case.spec.hidden:
            result.hint = f"likely cause: {found.label}"
            result.hint_levels = [result.hint]
        else:
            found.levels = self._levels(found, check)
            result.hint, result.hint_levels = found.message, list(found.levels)

    def case(self, case, answers: dict, results: dict) -> None:
        """Set the hint of every failing result of `case` (a generic label on hidden cases)."""
        ctx = CaseDiagnosis(self.ex, case, answers, results, self.tol)
        for check in self.ex.checks:
            if check not in results:
                continue
            try:
                found = ctx.diagnose(check)
            except Exception as err:  # noqa: BLE001 - a hint is a bonus; never let it break scoring
                warnings.warn(f"exercise {self.ex.id}, case {case.spec.name}, d{check}: the feedback broke: "
                              f"{type(err).__name__}: {err}", FeedbackWarning, stacklevel=2)
                found = None
            self._set(case, check, results[check], found)

    def error(self, case, traceback: str, results: dict) -> None:
        """The function raised on `case`: name the failing operation of its line, and its repair when confirmed."""
        if not case.spec.hidden and traceback:
            self.errors[case.spec.name] = traceback.strip().splitlines()[-1]
        try:
            with warnings.catch_warnings():  # torch's warnings about the grader's replays are not the student's
                warnings.simplefilter("ignore")
                found = self.raised(case, traceback)
        except Exception as err:  # noqa: BLE001 - a hint is a bonus
            warnings.warn(f"exercise {self.ex.id}, case {case.spec.name}: the feedback on the line that raised "
                          f"broke: {type(err).__name__}: {err}", FeedbackWarning, stacklevel=2)
            found = None
        for check, result in results.items():
            self._set(case, check, result, found)

    def raised(self, case, traceback: str) -> Diagnosis | None:
        if case.spec.hidden or not traceback:
            return None
        true = truth(self.ex, case)
        worked = self.ex.worked
        if self.ex.cascades:  # the line is one of the steps' rules
            values = {**case.inputs, **{f"d{k}": v for k, v in true.items()}, **case.ints}
            refs = [RULES[k][2] for k in self.ex.checks if k in RULES]
        elif worked is not None and worked.code:
            code = worked.code
            base = nearmiss.one_go_values(case.inputs, case.ints, self.ex.tensor_args)
            try:
                values = {k: v for k, v in nearmiss.run(code, base).items() if isinstance(v, (torch.Tensor, int))}
            except Exception:  # noqa: BLE001
                values = base
            refs = [code]
        else:
            return None
        r = nearmiss.diagnose_raised(traceback, refs, values, true)
        if r is None:
            return None
        message = nearmiss.raised_message(r, self.ex.function)
        if message is None:
            return None
        at = r.at if r.at in STEPS else None
        return Diagnosis("raised", message, SLIP_LABELS["raised"], root=at, at=at)

    def summary(self, check: str, results: list) -> str | None:
        """One hint for the check, from its cases' results; hidden cases add only their labels."""
        by_name = {c.spec.name: c for c in self.cases}
        pairs = [(by_name[r.case], r) for r in results if r.case in by_name]
        public = [(c, r) for c, r in pairs if not c.spec.hidden]
        hidden = [(c, r) for c, r in pairs if c.spec.hidden]
        failing = [(c, r, self.found.get((c.spec.name, check))) for c, r in public if not r.passed]
        found = [d for _, _, d in failing if d is not None]

        if found:
            # the kind of mistake seen in most cases (one case alone can match by coincidence, e.g. n=2)
            tally = Counter((d.kind, d.label) for d in found)
            best = max(tally, key=lambda k: (tally[k], -next(i for i, d in enumerate(found)
                                                              if (d.kind, d.label) == k)))
            first = next(d for d in found if (d.kind, d.label) == best)
            if check == self.ex.trajectory or first.kind in CONFIRMED:
                self.levels[check] = first.levels
                return first.message
            if len(found) == len(failing) and all(d.kind == "cascade" for d in found):
                root = min((d.root for d in found), key=self.order.__getitem__)
                chosen = next(d for d in found if d.root == root)
                self.levels[check] = chosen.levels
                return chosen.message
        hard = self.hardcoded(check, public) if check != self.ex.trajectory else None
        if hard:
            return hard
        if found:
            self.levels[check] = first.levels
            return first.message
        if failing:
            return None
        bad = [(c, r) for c, r in hidden if not r.passed]
        if bad:
            labels = []
            for c, _ in bad:
                d = self.found.get((c.spec.name, check))
                if d is not None and d.label not in labels:
                    labels.append(d.label)
            kind = f" (likely cause: {'; '.join(labels)})" if labels else ""
            return (f"Passes every public case but not {len(bad)} of the {len(hidden)} hidden ones{kind}: "
                    "make sure nothing depends on the sizes or the values of the public cases.")
        return None

    def levels_for(self, check: str, hint: str | None) -> list[str]:
        """The escalating hints behind a check's summary hint (just the hint when it has no levels)."""
        if not hint:
            return []
        found = self.levels.get(check)
        return list(found) if found and found[0] == hint else [hint]

    def lecture_size_in_error(self, case) -> bool:
        """The case's error names a size of the lecture's shape (32, 27, 10, 64, 30) that this case does not have."""
        spec = case.spec
        own = {spec.n, spec.block, spec.n_embd, spec.n_hidden, spec.vocab, spec.block * spec.n_embd}
        found = {int(x) for x in re.findall(r"\b\d+\b", self.errors.get(spec.name, ""))}
        return bool(found & (LECTURE_SIZES - own))

    def hardcoded(self, check: str, public: list) -> str | None:
        """Right on every public case of the lecture's shape, wrong or crashing only on other shapes."""
        lecture = [r for c, r in public if is_lecture_shape(c.spec)]
        failing = [r for c, r in public if not is_lecture_shape(c.spec) and not r.passed]
        if not lecture or not failing or not all(r.passed for r in lecture):
            return None
        explained = {d.kind for c, r in public if not r.passed and (d := self.found.get((c.spec.name, check)))}
        if explained & {"cascade", "not_finite", *CONFIRMED}:
            return None  # the failures have a confirmed cause of their own
        crash = all(r.status in ("error", "crashed", "timeout", "missing") for r in failing)
        if crash and not any(self.lecture_size_in_error(c) for c, r in public if not r.passed):
            return None  # a crash on other shapes only is a hard-coded size when its error shows one
        what = "crashes on" if crash else "is wrong on"
        shape = ", ".join(f"{k}={v}" for k, v in LECTURE_SHAPE.items())
        return (f"d{check} is right on the lecture's shape ({shape}) "
                f"but {what} other shapes: a size is hard-coded; {HARDCODED_SIZES}.")
