"""Attack (with the scan switched off): torch.func through an alias."""
import torch

transforms = torch.func


def embedding_backward(demb, Xb, vocab_size):
    C = torch.zeros(vocab_size, demb.shape[2])
    return transforms.grad(lambda C: (C[Xb] * demb).sum())(C)
