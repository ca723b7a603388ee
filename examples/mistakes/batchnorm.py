import torch
import torch.nn.functional as F


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    """Exercise 3: backprop through the batch norm layer in one go.

    The layer is ``hpreact = bngain * (hprebn - mean) / sqrt(var + 1e-5) + bnbias``
    where mean and var are taken over the batch (dim 0) and var uses Bessel's
    correction, 1/(n-1). In the lecture's notation
    ``bnraw = (hprebn - mean) * bnvar_inv``.

    Args:
        dhpreact: (n, n_hidden), the gradient of the loss with respect to hpreact.
        bngain: (1, n_hidden), the batch norm gain.
        bnraw: (n, n_hidden), the normalized pre-activations.
        bnvar_inv: (1, n_hidden), ``(var + 1e-5)**-0.5``.

    Returns:
        dhprebn: (n, n_hidden), the gradient of the loss with respect to hprebn.

    Derive it on paper first: the answer is one expression in ``dhpreact``,
    ``bngain``, ``bnvar_inv``, ``bnraw`` and ``n``. Compute it by hand with
    tensor operations (PyTorch's automatic differentiation is not allowed).
    """
    n = dhpreact.shape[0]
    dhprebn = bngain * bnvar_inv / n * (
        n * dhpreact - dhpreact.sum(0) - bnraw * (dhpreact * bnraw).sum(0)
    )
    return dhprebn
