"""Attack: one tensor of 800 GB."""
import torch


def embedding_backward(demb, Xb, vocab_size):
    return torch.zeros(10**11)
