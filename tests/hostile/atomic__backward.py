"""Attack: let autograd do exercise 1."""
import torch


def backward_atomic(**fwd):
    leaves = {k: v.clone().requires_grad_() for k, v in fwd.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    loss = -leaves["logprobs"][range(fwd["n"]), fwd["Yb"]].mean()
    loss.backward()
    return {"logprobs": leaves["logprobs"].grad}
