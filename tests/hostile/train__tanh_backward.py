"""Attack: tanh_backward (and friends) through torch.ops inside an otherwise hand-written pass."""
import torch


def backward_fast(**fwd):
    h, W2 = fwd["h"], fwd["W2"]
    dlogits = torch.softmax(fwd["logits"], 1)
    dlogits[range(fwd["n"]), fwd["Yb"]] -= 1
    dlogits /= fwd["n"]
    dhpreact = torch.ops.aten.tanh_backward(dlogits @ W2.T, h)
    return {"W2": h.T @ dlogits, "b2": dlogits.sum(0), "bngain": (fwd["bnraw"] * dhpreact).sum(0, keepdim=True),
            "bnbias": dhpreact.sum(0, keepdim=True), "C": None, "W1": None, "b1": None}
