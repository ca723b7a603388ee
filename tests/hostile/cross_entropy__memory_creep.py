"""Attack: memory that grows until something gives."""
import torch


def cross_entropy_backward(logits, Yb):
    hoard = []
    while True:
        hoard.append(torch.empty(10**8))
