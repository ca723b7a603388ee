"""Attack (with the scan switched off): autograd in a new thread, where torch's grad mode starts on."""
import threading

import torch


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    out = {}

    def work():
        x = torch.nn.Parameter(bnraw.clone())
        y = (x * dhpreact).sum()
        out["grad_fn"] = y.grad_fn  # None when grad mode stays off in threads
        try:
            torch.autograd.Variable._execution_engine.run_backward((y,), (torch.ones(()),), False, False, (x,),
                                                                   False, False)
        except RuntimeError:
            pass
        out["grad"] = torch.autograd.grad(y, x)[0]

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return out.get("grad")
