import torch


def layernorm_backward(dout, x, gamma, mean, rstd):
    """Backprop through a LayerNorm layer in one go (GPT-2's, over the last dimension).

    The layer normalises each position's C features on their own:
    ``mean = x.mean(-1, keepdim=True)``, ``var = x.var(-1, keepdim=True, correction=0)``
    (biased: 1/C), ``rstd = (var + 1e-5)**-0.5``, ``xhat = (x - mean) * rstd`` and
    ``out = gamma * xhat + beta``.

    Args:
        dout: (B, T, C), the gradient of the loss with respect to out.
        x: (B, T, C), the layer's input.
        gamma: (C,), the gain.
        mean: (B, T, 1), the mean of x over C.
        rstd: (B, T, 1), ``(var + 1e-5)**-0.5``.

    Returns:
        a dict with the three gradients: ``{"x": dx (B, T, C), "gamma": dgamma (C,),
        "beta": dbeta (C,)}``.

    gamma and beta are shared by every position (b, t), so their gradients add up
    over B and T. In dx, every feature of a position feeds that position's mean and
    variance: the answer is one expression in ``dxhat = dout * gamma``, ``xhat`` and
    ``rstd``. Compute it by hand with tensor operations (PyTorch's automatic
    differentiation is not allowed).
    """
    xhat = (x - mean) * rstd
    dbeta = None  # TODO
    dgamma = None  # TODO
    dxhat = None  # TODO
    dx = None  # TODO
    return {"x": dx, "gamma": dgamma, "beta": dbeta}
