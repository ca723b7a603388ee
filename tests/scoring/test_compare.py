"""Unit tests of the comparison of one gradient with autograd's."""

import pytest
import torch

from grader.scoring.compare import compare

RTOL = 1e-8
SCALE = 0.03  # a typical max |dlogits|


def ref(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_identical_is_exact():
    r = ref(4, 5)
    v = compare(r.clone(), r, scale=SCALE, rtol=RTOL)
    assert v.passed and v.exact and v.max_abs_diff == 0.0 and v.message == "exact"


def test_rounding_noise_is_approximate_pass():
    r = ref(4, 5)
    v = compare(r * (1 + 1e-14), r, scale=SCALE, rtol=RTOL)
    assert v.passed and not v.exact and v.message == "approximate"
    assert 0 < v.rel_err < 1e-13


def test_zero_gradient_against_autograd_noise():
    """db1 and dlogit_maxes are mathematically zero: an exact zero passes against autograd's 1e-18 noise."""
    noise = ref(64) * 1e-18
    assert compare(torch.zeros(64, dtype=torch.float64), noise, scale=SCALE, rtol=RTOL).passed
    assert compare(ref(64, seed=1) * 1e-17, noise, scale=SCALE, rtol=RTOL).passed
    # ... but a real value where zero is expected fails.
    assert not compare(ref(64) * 1e-3, noise, scale=SCALE, rtol=RTOL).passed


@pytest.mark.parametrize("relative", [1e-5, 1e-6])
def test_small_real_mistakes_fail(relative):
    """A missing 1e-5 in dbnvar shifts the gradient by ~1e-5 relative: it must fail."""
    r = ref(1, 64)
    v = compare(r * (1 + relative), r, scale=SCALE, rtol=RTOL)
    assert v.status == "wrong_values" and "relative error" in v.message


def test_bessel_factor_fails():
    n = 32
    r = ref(32, 64)
    assert not compare(r * (n - 1) / n, r, scale=SCALE, rtol=RTOL).passed


def test_size_one_dims_pass_with_note():
    r = ref(1, 64)
    v = compare(r.reshape(64), r, scale=SCALE, rtol=RTOL)
    assert v.passed and v.got_shape == [64]
    assert "size-1" in v.note
    v = compare(ref(27).reshape(1, 27), ref(27), scale=SCALE, rtol=RTOL)
    assert v.passed and v.note


def test_wrong_shape_fails_with_shapes_named():
    r = ref(27)
    v = compare(ref(32, 27), r, scale=SCALE, rtol=RTOL)
    assert v.status == "wrong_shape"
    assert "(32, 27)" in v.message and "(27)" in v.message
    assert compare(ref(10, 30).T, ref(10, 30), scale=SCALE, rtol=RTOL).status == "wrong_shape"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_not_finite(bad):
    r = ref(3, 4)
    got = r.clone()
    got[1, 2] = bad
    v = compare(got, r, scale=SCALE, rtol=RTOL)
    assert v.status == "not_finite" and "1 of 12" in v.message


def test_integer_dtype_is_wrong_type():
    v = compare(torch.zeros(3, 4, dtype=torch.int64), ref(3, 4), scale=SCALE, rtol=RTOL)
    assert v.status == "wrong_type" and "int64" in v.message


def test_float32_answer_is_noted_and_judged_on_values():
    r = ref(8, 8)
    v = compare(r.to(torch.float32), r, scale=SCALE, rtol=RTOL)
    assert "float32" in v.note
    assert v.status == "wrong_values"  # float32 rounding is far above the float64 tolerance
    assert compare(r.to(torch.float32), r, scale=SCALE, rtol=1e-3).passed
