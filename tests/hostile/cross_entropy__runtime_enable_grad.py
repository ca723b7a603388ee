"""Attack (with the scan switched off): switch grad mode back on."""
import torch


def cross_entropy_backward(logits, Yb):
    with torch.enable_grad():
        x = logits.clone().requires_grad_()
        loss = torch.nn.functional.cross_entropy(x, Yb)
        (g,) = torch.autograd.grad(loss, x)
    return g
