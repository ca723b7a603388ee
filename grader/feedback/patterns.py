"""Generic patterns: what a wrong gradient looks like, whatever the exercise.

The case as the feedback sees it (`Patterns`: the student's answers next to
the truth, compared on the grader's scaled tolerance) and the patterns that
need nothing but the answer and the true gradient: NaN or inf, all zeros, a
constant factor (named when it is n, 1/n, n-1, n/(n-1), ...), the wrong sign,
transposed, right values in the wrong shape or places, a broadcast that was
not summed, the gradient of a different tensor, float32 precision, close.
The strategies that know the exercise (grader.feedback.catalogue,
grader.feedback.cascades, grader.feedback.slips) build on `Patterns`; the
engine (grader.feedback.engine) decides their order.
"""

import math
from dataclasses import dataclass, field

import torch

from grader.course.mlp import ATOMIC
from grader.course.spec import Exercise
from grader.course.steps import STEPS, Vars
from grader.feedback.labels import LABELS, SIGN_HINTS
from grader.scoring.compare import ZERO_FLOOR, same_up_to_ones


def _factor_names(n: int, vocab: int | None):
    """Constant factors worth naming: (name, value, what it usually means)."""
    mean = "the loss is a mean over the n rows only, not over the vocabulary too"
    names = [
        ("n", n, "a 1/n is missing (a mean over the batch divides by n)"),
        ("1/n", 1 / n, "there is an extra 1/n"),
        ("n/(n-1)", n / (n - 1), "Bessel's correction: the forward pass divides the variance by n-1, not n"),
        ("(n-1)/n", (n - 1) / n, "Bessel's correction: the forward pass divides the variance by n-1, not n"),
        ("n-1", n - 1, "a 1/(n-1) is missing"),
        ("1/(n-1)", 1 / (n - 1), "there is an extra 1/(n-1)"),
    ]
    if vocab:  # (a case of a course's own model may have no vocabulary)
        names += [("1/vocab", 1 / vocab, mean), ("1/(n*vocab)", 1 / (n * vocab), mean)]
    names += [("2", 2.0, "check the 2 of d(x**2)/dx and the -0.5 of d(x**-0.5)/dx"),
              ("1/2", 0.5, "check the 2 of d(x**2)/dx and the -0.5 of d(x**-0.5)/dx")]
    if n != 32:  # last: n/32 = 1/2 when n = 16 says nothing about a hard-coded 32
        names += [("n/32", n / 32, "a hard-coded 32 (the lecture's batch size) where n belongs"),
                  ("32/n", 32 / n, "a hard-coded 32 (the lecture's batch size) where n belongs")]
    return [(name, value, why) for name, value, why in names if abs(value - 1) > 1e-9]


def shape_text(shape) -> str:
    return str(tuple(shape)).replace(",)", ")")


@dataclass
class Diagnosis:
    kind: str                 # a key of LABELS, or "misconception", "nearmiss", "raised"
    message: str              # for the student, on public cases
    label: str                # generic, for hidden cases
    root: str | None = None   # cascades: the first wrong gradient upstream
    given_upstream: bool = False  # cascades: this step is right, given the student's own upstream answers
    at: str | None = None     # the gradient whose step has the mistake (for the local rule)
    levels: list[str] = field(default_factory=list)  # nudge, local rule, worked expression
    weak: bool = False        # true but says no cause (a shape, "close", an unnamed factor): a confirmed slip wins


# Kinds whose cause is confirmed by reproducing the student's answer: they win a check's summary.
CONFIRMED = ("misconception", "nearmiss", "raised", "alias")


def lenient(t: torch.Tensor, shape) -> torch.Tensor | None:
    if t.shape == shape:
        return t
    if same_up_to_ones(t.shape, shape):
        return t.reshape(shape)
    return None


def uses_lecture_model(ex: Exercise) -> bool:
    """The exercise computes steps of the lecture's backward pass (its `path`): the lecture's gradients are its truth too."""
    return any(name in STEPS for name in ex.path)


def truth(ex: Exercise, case) -> dict[str, torch.Tensor]:
    """Every true gradient the exercise's feedback may use: the lecture model's (if it is on its path), then its own references."""
    lecture = case.gradients if uses_lecture_model(ex) else {}
    return {**lecture, **{k: v for k, v in case.references[ex.id].items() if isinstance(v, torch.Tensor)}}


def backward_order(ex: Exercise) -> dict[str, int]:
    """Gradient -> its place in the backward pass: the lecture's steps, then the exercise's own checks."""
    return {name: i for i, name in enumerate(dict.fromkeys((*ATOMIC, *ex.checks)))}


class Patterns:
    """One case of one exercise: the student's answers next to the truth, and the generic patterns."""

    def __init__(self, ex: Exercise, case, answers: dict, results: dict, tol: float):
        self.ex, self.case, self.results = ex, case, results
        self.forward = case.inputs
        self.ints = case.ints
        self.n = case.ints["n"]
        self.true = truth(ex, case)
        self.order = backward_order(ex)
        self.refs = case.references[ex.id]
        self.tol = tol
        self.floor = ZERO_FLOOR * case.grad_scale
        self.answers = {k: v for k, v in answers.items() if isinstance(v, torch.Tensor)}
        # what the strategies search once per case (grader.feedback.catalogue, grader.feedback.slips)
        self._propagated: dict[tuple, dict | None] = {}  # (entry, variant) -> its gradients carried down
        self._one_go = None  # the exercise's slip for this case: None before the search, False if none
        # the strategies ask for the same gradients again and again (a cascade, for each upstream choice)
        self._students: dict[str, torch.Tensor | None] = {}
        self._raws: dict[str, torch.Tensor | None] = {}
        self._scales: dict[int, tuple[torch.Tensor, float]] = {}

    # -- the student's answers --------------------------------------------------------------
    def student(self, name: str) -> torch.Tensor | None:
        """The student's gradient, usable in a formula: floating, finite, the right shape (worked out once)."""
        if name not in self._students:
            self._students[name] = self._student(name)
        return self._students[name]

    def _student(self, name: str) -> torch.Tensor | None:
        t = self.answers.get(name)
        if t is None or not t.is_floating_point() or name not in self.true:
            return None
        t = lenient(t.to(self.true[name].dtype), self.true[name].shape)
        if t is None or not bool(torch.isfinite(t).all()):
            return None
        return t

    def raw(self, name: str) -> torch.Tensor | None:
        """The student's gradient as returned (any shape), for replaying their own next step (worked out once)."""
        if name not in self._raws:
            self._raws[name] = self._raw(name)
        return self._raws[name]

    def _raw(self, name: str) -> torch.Tensor | None:
        t = self.answers.get(name)
        if t is None or not t.is_floating_point() or name not in self.true:
            return None
        t = t.to(self.true[name].dtype)
        if not bool(torch.isfinite(t).all()):
            return None
        fitted = lenient(t, self.true[name].shape)
        return t if fitted is None else fitted

    def failed(self, name: str) -> bool:
        r = self.results.get(name)
        return r is not None and not r.passed

    # -- comparisons ---------------------------------------------------------------------------
    def tol_for(self, s: torch.Tensor) -> float:
        ref_dtype = next(iter(self.true.values())).dtype
        return self.tol if s.dtype == ref_dtype else max(self.tol, 1e-4)

    def close(self, s: torch.Tensor, w: torch.Tensor, ref: torch.Tensor | None = None) -> bool:
        """Does `s` match `w` (shapes equal up to size-1 dims), on the grader's scaled tolerance?"""
        if not isinstance(w, torch.Tensor) or not w.is_floating_point():
            return False
        w2 = lenient(w, s.shape)
        if w2 is None:
            return False
        top = float(w2.abs().max()) if w2.numel() else 0.0
        if not math.isfinite(top):  # a NaN or an inf anywhere in `w` (max keeps a NaN)
            return False
        diff = float((s.to(torch.float64) - w2.to(torch.float64)).abs().max()) if s.numel() else 0.0
        return diff <= self.tol_for(s) * max(top, self._scale_of(ref), self.floor, 1e-300)

    def _scale_of(self, ref: torch.Tensor | None) -> float:
        """max |ref|, once per reference (the same few are asked for in every comparison)."""
        if ref is None or not ref.numel():
            return 0.0
        if id(ref) not in self._scales:
            self._scales[id(ref)] = (ref, float(ref.abs().max()))  # the tensor kept: its id stays its own
        return self._scales[id(ref)][1]

    def local_rule(self, check: str, grads: dict) -> torch.Tensor | None:
        if check not in STEPS:
            return None
        try:
            return STEPS[check].rule(Vars(self.forward, grads, self.ints))
        except Exception:  # noqa: BLE001
            return None

    # -- generic patterns ----------------------------------------------------------------------
    def not_finite(self, check: str, s: torch.Tensor | None) -> Diagnosis:
        label = LABELS["not_finite"]
        count = ""
        if s is not None and s.is_floating_point():
            count = f" ({int((~torch.isfinite(s)).sum())} of {s.numel()} entries)"
        if self.ex.cascades:  # each check one step, in backward order: the first one with NaN is the source
            first = next((c for c in self.ex.checks if (r := self.results.get(c)) is not None
                          and r.status == "not_finite"), check)
            if first != check:
                return Diagnosis("not_finite", f"d{check} has NaN or inf{count}, which first appear in "
                                 f"d{first}, earlier in the backward pass: fix d{first} first.", label,
                                 root=first)
            return Diagnosis("not_finite", f"d{check} has NaN or inf{count}, the first gradient of the "
                             "backward pass that does: look for a division by zero, the log of 0, or a "
                             "negative power of 0 in this step.", label)
        return Diagnosis("not_finite", f"d{check} has NaN or inf{count}: look for a division by zero, "
                         "the log of 0, or exp of a large number (subtract the row max first).", label)

    def generic(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        ref = self.refs[check]
        if s.shape != ref.shape and not same_up_to_ones(s.shape, ref.shape):
            return self.shape(check, s, ref)
        s2 = s.reshape(ref.shape).to(torch.float64)
        r = ref.to(torch.float64)
        rmax = float(r.abs().max()) if r.numel() else 0.0
        if rmax > self.floor:
            if float(s2.abs().max()) == 0.0:
                return Diagnosis("zeros", f"d{check} is all zeros, but the true gradient is not: "
                                 "is it computed at all, or multiplied by something that is zero?",
                                 LABELS["zeros"])
            found = self.factor(check, s2, r)
            if found:
                return found
            if s2.dim() == 2 and s2.shape[0] == s2.shape[1] and self.close(s2.T.contiguous(), r, r):
                return Diagnosis("transposed", f"d{check} is transposed: a gradient has the shape of its "
                                 f"tensor, so check the order of the matrix product.", LABELS["transposed"])
            if self.permuted(s2, r):
                return self.wrong_places(check)
        other = self.other_tensor(check, s)
        if other:
            return other
        return self.precision(check, s, ref)

    def factor(self, check: str, s: torch.Tensor, r: torch.Tensor) -> Diagnosis | None:
        c = float((s * r).sum() / (r * r).sum())
        if not abs(c) > 1e-6 or not self.close(s, c * r, r):  # (a near-zero ratio is no factor: s is ~0)
            return None
        if abs(c + 1) < 1e-6:
            why = SIGN_HINTS.get(check)
            return Diagnosis("sign", f"d{check} has the right size but the wrong sign"
                             + (f": {why}." if why else ": check the minus signs of this step."), LABELS["sign"])
        sign = "the wrong sign and " if c < 0 else ""
        for name, value, why in _factor_names(self.n, self.ints.get("vocab_size")):
            if abs(abs(c) / value - 1) < 1e-6:
                return Diagnosis("factor", f"d{check} has {sign}an extra factor {name} (it is {c:.4g} times "
                                 f"the right answer, n = {self.n}): {why}.", LABELS["factor"])
        return Diagnosis("factor", f"d{check} is {c:.4g} times the right answer: the formula is right up to a "
                         "constant factor; look for a missing or extra constant.", LABELS["factor"], weak=True)

    def shape(self, check: str, s: torch.Tensor, ref: torch.Tensor) -> Diagnosis:
        got, want = shape_text(s.shape), shape_text(ref.shape)
        if s.dim() == 2 and lenient(s.T, ref.shape) is not None and self.close(lenient(s.T, ref.shape), ref, ref):
            return Diagnosis("transposed", f"d{check} is transposed: it has shape {got} but {check} has shape "
                             f"{want}; swap the order of the matrix product (e.g. A.T @ B, not B.T @ A).",
                             LABELS["transposed"])
        if s.numel() == ref.numel() and self.close(s.reshape(ref.shape), ref, ref):
            return Diagnosis("reshaped", f"d{check} has the right values in the wrong shape {got}: "
                             f"view it as {check}'s shape, {want} (e.g. .view({check}.shape)).",
                             LABELS["reshaped"])
        if s.numel() == ref.numel() and self.permuted(s.reshape(ref.shape), ref):
            return self.wrong_places(check)
        summed = self.summed_to(s, ref.shape)
        if summed is not None:
            total, dims = summed
            if self.close(total, ref, ref):
                where = ", ".join(str(d) for d in dims)
                return Diagnosis("not_summed", f"d{check} has shape {got} instead of {want}: {check} was "
                                 f"broadcast in the forward pass, so sum its gradient over dim {where} "
                                 "(keepdim=True to keep the shape).", LABELS["not_summed"])
            return Diagnosis("not_summed", f"d{check} has shape {got} instead of {want}: a gradient has the "
                             f"shape of its tensor; {check} was broadcast in the forward pass, so its gradient "
                             "sums over the broadcast dims.", LABELS["not_summed"])
        return Diagnosis("wrong_shape", f"d{check} has shape {got}, but a gradient has the shape of its tensor: "
                         f"{check} is {want}.", LABELS["wrong_shape"], weak=True)

    def permuted(self, s: torch.Tensor, r: torch.Tensor) -> bool:
        """The same values as the truth, in other places."""
        return self.close(s.reshape(-1).sort().values, r.reshape(-1).sort().values.to(s.dtype), r)

    def wrong_places(self, check: str) -> Diagnosis:
        return Diagnosis("permuted", f"d{check} has the right values in the wrong places: check the order of "
                         f"your view/reshape or indexing (a view keeps the row-major order; to undo "
                         f"{check}'s own view, use .view({check}.shape)).", LABELS["permuted"])

    @staticmethod
    def summed_to(s: torch.Tensor, shape) -> tuple[torch.Tensor, list[int]] | None:
        """`s` summed over the dims where `shape` is broadcast, when that makes sense."""
        if s.dim() < len(shape):
            return None
        padded = (1,) * (s.dim() - len(shape)) + tuple(shape)
        dims = [i for i, (a, b) in enumerate(zip(s.shape, padded)) if a != b]
        if not dims or any(padded[i] != 1 for i in dims):
            return None
        return s.sum(dims, keepdim=True).reshape(shape), dims

    def other_tensor(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        ref = self.refs[check]
        for name in self.true:
            other = self.true[name]
            if name == check or float(other.abs().max()) <= self.floor or self.close(ref.to(other.dtype), other, ref):
                continue
            if lenient(other, s.shape) is not None and self.close(s, other, other):
                return Diagnosis("other_tensor", f"d{check} has the values of d{name}: check which tensor "
                                 f"this gradient is for, and whether d{name} = d{check} without .clone() "
                                 "changed one of them in place.", LABELS["other_tensor"])
        for name, value in self.forward.items():
            if not value.is_floating_point() or name.startswith(("d", "traj.")) or float(value.abs().max()) == 0:
                continue
            if lenient(value, s.shape) is not None and self.close(s, value, value):
                return Diagnosis("other_tensor", f"d{check} has the values of the forward tensor {name} "
                                 "itself: it should be the gradient of the loss with respect to "
                                 f"{check}.", LABELS["other_tensor"])
        return None

    def precision(self, check: str, s: torch.Tensor, ref: torch.Tensor) -> Diagnosis | None:
        r = self.results[check]
        rel = r.rel_err
        if rel is None or float(ref.abs().max()) <= self.floor:
            return None  # a gradient that is zero in truth: its error is noise, it shows no precision
        low = s.dtype in (torch.float32, torch.float16, torch.bfloat16) and ref.dtype == torch.float64
        rounded = ref.dtype == torch.float64 and bool(torch.equal(s.to(torch.float32).to(s.dtype), s))
        if (low and rel < 1e-2) or (rounded and rel < 1e-5):
            return Diagnosis("precision", f"d{check} is right only up to float32 precision (relative error "
                             f"{rel:.0e}): some tensor here is float32; create new tensors with zeros_like(...) "
                             "or dtype=... so the computation stays in the grading precision.",
                             LABELS["precision"], weak=True)
        if rel < 1e-4:
            return Diagnosis("close", f"d{check} is very close (relative error {rel:.0e}) but outside the "
                             f"tolerance ({self.tol:.0e}): a tiny term is missing or wrong, such as the 1e-5 "
                             "of batch norm.", LABELS["close"], weak=True)
        return None
