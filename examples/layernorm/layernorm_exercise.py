"""LayerNorm backward in one go: an exercise defined by its course, outside the grader.

The layer is GPT-2's: normalise each position's C features over the last dimension
(biased variance, eps = 1e-5), then scale by gamma and shift by beta, both of shape (C,).
Everything the grader needs to know about the exercise is in this file.
"""

import torch

EPS = 1e-5


def forward(x, gamma, beta):
    """The layer: out, and the mean and rstd the backward pass is given (shape (B, T, 1))."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased: 1/C, as GPT-2
    rstd = (var + EPS) ** -0.5
    return gamma * (x - mean) * rstd + beta, mean, rstd


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
