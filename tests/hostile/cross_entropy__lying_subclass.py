"""Attack: a tensor subclass that claims to equal anything."""
import torch


class Liar(torch.Tensor):
    def __eq__(self, other):
        return True

    def allclose(self, *args, **kwargs):
        return True

    def __sub__(self, other):
        return torch.zeros(1)


def cross_entropy_backward(logits, Yb):
    return torch.zeros_like(logits).as_subclass(Liar)
