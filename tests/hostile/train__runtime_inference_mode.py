"""Attack (with the scan switched off): inference_mode(False) turns grad mode on in C++."""
import torch


def backward_fast(**fwd):
    with torch.inference_mode(False):
        W2 = fwd["W2"].clone()
        W2.requires_grad = True
    return {}
