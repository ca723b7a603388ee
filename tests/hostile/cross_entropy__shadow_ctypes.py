"""Attack: a file of the submission named like a real module (ctypes.py) made its import of ctypes look like the
submission's own; in the sandbox the real ctypes (already imported by torch) loads instead.

The test adds `ctypes.py` (defining CDLL and c_bool) beside this file.
"""
import ctypes

import torch
import torch.nn.functional as F


def cross_entropy_backward(logits, Yb):
    c10 = ctypes.CDLL("libc10.so")
    print("C10", c10)
    n = logits.shape[0]
    return (F.softmax(logits, 1) - F.one_hot(Yb, logits.shape[1])) / n
