"""Comparing one student gradient with autograd's, like the lecture's `cmp`, but scaled.

The error is max|got - expected| over a scale: the expected gradient's own
largest entry, or, for gradients that are mathematically zero (`db1`,
`dlogit_maxes`, where autograd leaves ~1e-18 of rounding noise), a floor
taken from the case's gradients. Correct formulations land near 1e-13 in
float64; the default tolerance of 1e-8 leaves five orders of margin and
still fails the smallest real mistakes (a missing 1e-5, 1/n for 1/(n-1)).
"""

from dataclasses import dataclass

import torch

ZERO_FLOOR = 1e-3  # fraction of the case's gradient scale used as the floor


@dataclass
class Verdict:
    status: str                     # passed | wrong_type | wrong_shape | not_finite | wrong_values
    message: str
    exact: bool = False
    max_abs_diff: float | None = None
    rel_err: float | None = None
    got_shape: list[int] | None = None
    got_dtype: str | None = None
    note: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _shape(t) -> str:
    return str(tuple(t.shape)).replace(",)", ")")


def same_up_to_ones(a: torch.Size, b: torch.Size) -> bool:
    return [d for d in a if d != 1] == [d for d in b if d != 1]


def compare(got: torch.Tensor, expected: torch.Tensor, *, scale: float, rtol: float) -> Verdict:
    """`scale` is the case's gradient scale (max |dlogits|); `rtol` the largest scaled error that passes."""
    verdict = Verdict(status="passed", message="", got_shape=list(got.shape), got_dtype=str(got.dtype).removeprefix("torch."))
    if not got.is_floating_point():
        verdict.status = "wrong_type"
        verdict.message = (f"wrong dtype {verdict.got_dtype}: gradients are floating point "
                           f"({str(expected.dtype).removeprefix('torch.')} here)")
        return verdict
    if got.shape != expected.shape:
        if not same_up_to_ones(got.shape, expected.shape):
            verdict.status = "wrong_shape"
            verdict.message = f"wrong shape {_shape(got)}, expected {_shape(expected)}"
            return verdict
        verdict.note = (f"shape {_shape(got)} differs from {_shape(expected)} only by size-1 "
                        "dimensions (keepdim); accepted")
        got = got.reshape(expected.shape)
    finite = torch.isfinite(got)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        verdict.status = "not_finite"
        verdict.message = f"not finite: NaN or inf in {bad} of {got.numel()} entries"
        return verdict
    if got.dtype != expected.dtype:
        dtype_note = (f"returned {verdict.got_dtype} while grading in "
                      f"{str(expected.dtype).removeprefix('torch.')}")
        verdict.note = f"{verdict.note}; {dtype_note}" if verdict.note else dtype_note
    diff = (got.to(torch.float64) - expected.to(torch.float64)).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    magnitude = float(expected.abs().max()) if expected.numel() else 0.0
    rel = max_abs / max(magnitude, ZERO_FLOOR * scale, 1e-300)
    verdict.exact = bool(torch.equal(got, expected))
    verdict.max_abs_diff = max_abs
    verdict.rel_err = rel
    if rel > rtol:
        verdict.status = "wrong_values"
        verdict.message = f"wrong values: relative error {rel:.1e}, max abs diff {max_abs:.1e}"
    else:
        verdict.message = "exact" if verdict.exact else "approximate"
    return verdict
