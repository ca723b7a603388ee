"""Attack: a dummy function named like an aten backward kernel, then the kernel itself through torch.ops."""
import torch


def native_batch_norm_backward():
    """Defined only so that a scan that exempts the student's own names lets the kernel through."""


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    # bnraw has the batch statistics of hprebn up to a shift and scale: enough for the kernel's answer.
    dx, _, _ = torch.ops.aten.native_batch_norm_backward(
        dhpreact, bnraw, bngain.view(-1), None, None, bnraw.mean(0), bnvar_inv.view(-1), True, 1e-5,
        [True, False, False])
    return dx
