"""Attack: a broadcast view with a trillion elements (and no memory behind it)."""
import torch


def embedding_backward(demb, Xb, vocab_size):
    return torch.zeros(1).expand(10**12)
