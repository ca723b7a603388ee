"""Attack: torch.func and functorch transforms."""
import torch
from torch.func import jacrev, vjp  # noqa: F401


def embedding_backward(demb, Xb, vocab_size):
    import functorch  # noqa: F401
    return torch.func.grad(lambda C: (C[Xb] * demb).sum())(torch.zeros(vocab_size, demb.shape[2]))
