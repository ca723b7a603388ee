import torch
import torch.nn.functional as F


def embedding_backward(demb, Xb, vocab_size):
    """Backprop through the embedding lookup ``emb = C[Xb]``.

    Args:
        demb: (n, block, n_embd), the gradient of the loss with respect to emb.
        Xb: (n, block) int64, the indices of the characters of the batch.
        vocab_size: int, the number of rows of C (vocab).

    Returns:
        dC: (vocab_size, n_embd), the gradient of the loss with respect to C.

    Every time a row of C is used in Xb, its gradient receives the matching
    row of demb: repeated indices must add up (``dC[Xb] += demb`` does not),
    and rows that are never used get zero. Compute it by hand with tensor
    operations (PyTorch's automatic differentiation is not allowed).
    """
    # BEGIN SOLUTION
    dC = torch.zeros((vocab_size, demb.shape[-1]), dtype=demb.dtype, device=demb.device)
    dC.index_add_(0, Xb.reshape(-1), demb.reshape(-1, demb.shape[-1]))
    # END SOLUTION
    return dC
