"""Attack: exercise 3 through a helper module that uses autograd."""
from autograd_helper import hprebn_grad  # noqa: F401


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    return None
