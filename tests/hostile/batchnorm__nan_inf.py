"""Attack: NaN and inf, which compare false to everything."""
import torch


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    out = torch.full_like(dhpreact, float("nan"))
    out[0] = float("inf")
    return out
