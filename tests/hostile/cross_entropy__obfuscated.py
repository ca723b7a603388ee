"""Attack: reach autograd through names built at run time."""
import torch

_name = "".join(["back", "ward"])


def cross_entropy_backward(logits, Yb):
    x = logits.clone()
    getattr(torch, "auto" + "grad")
    mod = __import__("torch." + "autograd", fromlist=["grad"])
    return eval("mod.grad")(x.sum(), x)
