import torch
import torch.nn.functional as F


def backward_fast(
    Xb, Yb, C, W1, b1, W2, b2, bngain, bnbias,
    emb, embcat, hprebn, bnmeani, bndiff, bndiff2, bnvar, bnvar_inv, bnraw,
    hpreact, h, logits, logit_maxes, norm_logits, counts, counts_sum,
    counts_sum_inv, probs, logprobs, n,
):
    """Exercise 4: the whole backward pass, with the one-go formulas.

    Gets the same keyword arguments as ``backward_atomic`` (every tensor of
    the forward pass by its lecture name, plus the batch size ``n``). Shapes,
    with n = batch size, block = context length, n_embd = embedding size,
    n_hidden = hidden units, vocab = vocabulary size:

        Xb (n, block) int64, Yb (n,) int64
        C (vocab, n_embd), W1 (block*n_embd, n_hidden), b1 (n_hidden,),
        W2 (n_hidden, vocab), b2 (vocab,), bngain and bnbias (1, n_hidden)
        emb (n, block, n_embd), embcat (n, block*n_embd)
        hprebn, bnraw, hpreact, h: (n, n_hidden); bnvar_inv: (1, n_hidden)
        logits: (n, vocab)

    Returns a dict that maps the 7 parameter names ``C, W1, b1, W2, b2,
    bngain, bnbias`` to the gradients of the mean cross-entropy loss with
    respect to them, each with exactly the shape of its parameter.

    Put it all together: cross entropy in one go (exercise 2), then the
    output layer, tanh, batch norm in one go (exercise 3), the first layer
    and the embedding. The grader also trains a few SGD steps with these
    gradients and compares the parameters with the reference run. Compute
    everything by hand with tensor operations (PyTorch's automatic
    differentiation is not allowed).
    """
    # cross entropy in one go
    dlogits = F.softmax(logits, 1)
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    # second layer
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    # tanh
    dhpreact = (1.0 - h**2) * dh
    # batch norm in one go
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dhprebn = bngain * bnvar_inv / n * (
        n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0)
    )
    # first layer
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    # embedding
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C)
    dC.index_add_(0, Xb.reshape(-1), demb.reshape(-1, C.shape[1]))
    return {"C": dC, "W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "bngain": dbngain, "bnbias": dbnbias}
