"""Attack: getattr under another name with split strings, to take autograd back from the runtime guard.

It tries, in turn (each step going on when one is refused): the original `_set_grad_enabled` out of the
guard's closure, the switch itself, `requires_grad_` on the C type torch._C.TensorBase, and the engine's
`run_backward` on the lecture's forward pass.
"""
import torch

from grader.course.mlp import forward  # the lecture's forward pass, to rebuild a graph

_ga = getattr
_C = _ga(torch, "_" + "C")


def backward_atomic(**fwd):
    switch = _ga(_C, "_set_grad" + "_enabled")
    for cell in _ga(switch, "__clo" + "sure__") or ():
        original = cell.cell_contents
        if callable(original):
            original(True)
    try:
        switch(True)
    except RuntimeError:
        pass
    params = {k: _ga(_ga(_C, "Tensor" + "Base"), "requires_grad_")(fwd[k].clone())
              for k in ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")}
    out = forward(params, fwd["Xb"], fwd["Yb"])
    engine = _ga(_ga(torch.autograd, "Vari" + "able"), "_execution" + "_engine")
    grads = _ga(engine, "run_" + "backward")((out["loss"],), (torch.ones(()),), False, False,
                                            tuple(params.values()), False, False)
    return dict(zip(params, grads))
