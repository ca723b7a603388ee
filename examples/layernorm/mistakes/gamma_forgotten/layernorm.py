# A wrong submission for the tests: dxhat is taken as dout: gamma is missing from dx.
import torch


def layernorm_backward(dout, x, gamma, mean, rstd):
    xhat = (x - mean) * rstd
    dbeta = dout.sum((0, 1))
    dgamma = (dout * xhat).sum((0, 1))
    dxhat = dout
    dx = rstd * (dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True))
    return {"x": dx, "gamma": dgamma, "beta": dbeta}
