# A wrong submission for the tests: dbeta keeps one value per position instead of summing over B and T.
import torch


def layernorm_backward(dout, x, gamma, mean, rstd):
    xhat = (x - mean) * rstd
    dbeta = dout
    dgamma = (dout * xhat).sum((0, 1))
    dxhat = dout * gamma
    dx = rstd * (dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True))
    return {"x": dx, "gamma": dgamma, "beta": dbeta}
