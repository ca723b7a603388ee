"""Attack: the answer from aten's own backward kernels (each tried in turn)."""
import torch


def cross_entropy_backward(logits, Yb):
    n = logits.shape[0]
    logp = torch.log_softmax(logits, 1)
    grad = torch.full((), 1.0 / n, dtype=logits.dtype)
    for attempt in (
        lambda: torch.ops.aten.nll_loss_backward(grad, logp, Yb, None, 1, -100, torch.tensor(float(n))),
        lambda: torch._log_softmax_backward_data(-torch.nn.functional.one_hot(Yb, logits.shape[1]) / n,
                                                 logp, 1, logits.dtype),
        lambda: torch._softmax_backward_data(torch.ones_like(logits), logp.exp(), 1, logits.dtype),
    ):
        try:
            return attempt()
        except RuntimeError:
            continue
    return None
