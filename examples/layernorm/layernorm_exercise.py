"""LayerNorm backward in one go: an exercise defined by its course, outside the grader.

The layer is GPT-2's: normalise each position's C features over the last dimension
(biased variance, eps = 1e-5), then scale by gamma and shift by beta, both of shape (C,).
Everything the grader needs to know about the exercise is in this file.
"""

import torch

from grader.course.misconception import Misconception, Worked
from grader.course.spec import Exercise, GradientCheck, NotInLecture

EPS = 1e-5


def forward(x, gamma, beta):
    """The layer: out, and the mean and rstd the backward pass is given (shape (B, T, 1))."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased: 1/C, as GPT-2
    rstd = (var + EPS) ** -0.5
    return gamma * (x - mean) * rstd + beta, mean, rstd


def build(case, generator):
    """The grader's hook: one case's inputs and references, its shape taken from the case.

    grading.yaml's case fields are the lecture's; this course reads them as B = n, T = block
    and C = n_embd (the other fields do not matter here).
    """
    spec = case.spec
    return make_case(generator, spec.n, spec.block, spec.n_embd, case.dtype)


def make_case(g, B, T, C, dtype=torch.float64):
    """Inputs and autograd references for one (B, T, C), every tensor from the generator `g`.

    x has a non-zero mean and a spread far from 1, and gamma, beta are near 1 and 0 but not
    equal to them, so that no wrong formula can hide behind a zero or a one.
    """
    def randn(*shape):
        return torch.randn(shape, generator=g, dtype=dtype)

    x = randn(B, T, C) * 2.0 + randn(B, T, 1)
    gamma = 1.0 + 0.3 * randn(C)
    beta = 0.3 * randn(C)
    dout = randn(B, T, C)
    leaves = [t.clone().requires_grad_(True) for t in (x, gamma, beta)]
    out, mean, rstd = forward(*leaves)
    out.backward(dout)
    inputs = {"dout": dout, "x": x, "gamma": gamma, "mean": mean.detach(), "rstd": rstd.detach()}
    references = {name: leaf.grad.detach() for name, leaf in zip(("x", "gamma", "beta"), leaves)}
    return inputs, references


# -- the classic mistakes, each as the wrong gradient it gives -----------------------------------
# `v` holds the case's inputs by name (v.dout, v.x, v.gamma, v.mean, v.rstd).

def _xhat(v):
    return (v.x - v.mean) * v.rstd


def dx_without_mean_term(v):
    """dx with the term that flows through the mean dropped."""
    dxhat, xhat = v.dout * v.gamma, _xhat(v)
    return v.rstd * (dxhat - xhat * (dxhat * xhat).mean(-1, keepdim=True))


def dx_without_variance_term(v):
    """dx with the term that flows through the variance (xhat * mean(dxhat * xhat)) dropped."""
    dxhat = v.dout * v.gamma
    return v.rstd * (dxhat - dxhat.mean(-1, keepdim=True))


def dx_without_gamma(v):
    """dx with dxhat = dout: gamma left out of the chain rule."""
    dxhat, xhat = v.dout, _xhat(v)
    return v.rstd * (dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True))


def dgamma_not_summed(v):
    """dgamma per position, (B, T, C): the sum over B and T left out."""
    return v.dout * _xhat(v)


def dbeta_not_summed(v):
    """dbeta per position, (B, T, C): the sum over B and T left out."""
    return v.dout


# What the student is told when their answer matches one of the wrong formulas above.
MISCONCEPTIONS = (
    Misconception(
        "ln_no_mean_term", "x", "the mean's term of dx is missing", dx_without_mean_term,
        "dx is missing the term that flows through the mean: every feature of a position moves "
        "that position's mean, so subtract dxhat.mean(-1, keepdim=True) from dxhat before "
        "multiplying by rstd."),
    Misconception(
        "ln_no_variance_term", "x", "the variance's term of dx is missing", dx_without_variance_term,
        "dx is missing the term that flows through the variance: every feature of a position also "
        "moves its rstd, which adds -xhat * (dxhat * xhat).mean(-1, keepdim=True) inside the "
        "bracket."),
    Misconception(
        "ln_gamma_forgotten", "x", "gamma is missing from dx", dx_without_gamma,
        "dx is computed as if gamma were 1: out = gamma * xhat + beta, so the gradient that reaches "
        "xhat is dxhat = dout * gamma. Start dx from that."),
    Misconception(
        "ln_dgamma_not_summed", "gamma", "dgamma is not summed over B and T", dgamma_not_summed,
        "dgamma has one value per position: gamma is shared by every position (b, t), so its "
        "gradient adds up all of them. Sum dout * xhat over dimensions 0 and 1 to get shape (C,)."),
    Misconception(
        "ln_dbeta_not_summed", "beta", "dbeta is not summed over B and T", dbeta_not_summed,
        "dbeta has one value per position: beta is added at every position (b, t), so its gradient "
        "is the sum of dout over dimensions 0 and 1, of shape (C,)."),
)

# The answer as a rule and as code, for the hints' second and third levels and the search for a
# single slip (the code runs with the function's arguments in scope and computes every d<check>).
WORKED = Worked(
    "with xhat = (x - mean) * rstd and dxhat = dout * gamma, dbeta and dgamma sum dout and "
    "dout * xhat over B and T (dims 0 and 1); dx = rstd * (dxhat - mean(dxhat) - xhat * "
    "mean(dxhat * xhat)), both means over C (the last dim, keepdim=True)",
    "xhat = (x - mean) * rstd\n"
    "dbeta = dout.sum((0, 1))\n"
    "dgamma = (dout * xhat).sum((0, 1))\n"
    "dxhat = dout * gamma\n"
    "dx = rstd * (dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True))")

EXERCISE = Exercise(
    id="layernorm",
    title="LayerNorm backward in one go",
    file="layernorm.py",
    function="layernorm_backward",
    tensor_args=("dout", "x", "gamma", "mean", "rstd"),
    checks=(GradientCheck("x"), GradientCheck("gamma"), GradientCheck("beta")),
    build=build,
    lecture=NotInLecture("the lecture's notebook has no LayerNorm exercise: grade layernorm.py instead"),
    misconceptions=MISCONCEPTIONS,
    worked=WORKED,
    lesson="lessons/layernorm.md",
    check_cell="lessons/layernorm_check.py",
)
