# A wrong submission for the tests: dx drops the term that flows through the mean.
import torch


def layernorm_backward(dout, x, gamma, mean, rstd):
    xhat = (x - mean) * rstd
    dbeta = dout.sum((0, 1))
    dgamma = (dout * xhat).sum((0, 1))
    dxhat = dout * gamma
    dx = rstd * (dxhat - xhat * (dxhat * xhat).mean(-1, keepdim=True))
    return {"x": dx, "gamma": dgamma, "beta": dbeta}
