import torch
import torch.nn.functional as F


def backward_atomic(
    Xb, Yb, C, W1, b1, W2, b2, bngain, bnbias,
    emb, embcat, hprebn, bnmeani, bndiff, bndiff2, bnvar, bnvar_inv, bnraw,
    hpreact, h, logits, logit_maxes, norm_logits, counts, counts_sum,
    counts_sum_inv, probs, logprobs, n,
):
    """Exercise 1: backprop through the whole network, one atomic step at a time.

    Every argument is a tensor of the lecture's forward pass, passed by its
    lecture name, plus the batch size ``n`` (an int). Shapes, with
    n = batch size, block = context length, n_embd = embedding size,
    n_hidden = hidden units, vocab = vocabulary size:

        Xb (n, block) int64, Yb (n,) int64
        C (vocab, n_embd), W1 (block*n_embd, n_hidden), b1 (n_hidden,),
        W2 (n_hidden, vocab), b2 (vocab,), bngain and bnbias (1, n_hidden)
        emb (n, block, n_embd), embcat (n, block*n_embd)
        hprebn, bndiff, bndiff2, bnraw, hpreact, h: (n, n_hidden)
        bnmeani, bnvar, bnvar_inv: (1, n_hidden)
        logits, norm_logits, counts, probs, logprobs: (n, vocab)
        logit_maxes, counts_sum, counts_sum_inv: (n, 1)

    The forward pass is the lecture's (batch norm with Bessel's correction
    1/(n-1) and eps = 1e-5) and the loss is
    ``loss = -logprobs[range(n), Yb].mean()``.

    Returns a dict that maps each of the 26 names ``logprobs, probs, ...,
    emb, C`` (the tensor's name without the ``d``) to the gradient of ``loss``
    with respect to that tensor, with exactly the shape of the tensor.
    Work backwards one line of the forward pass at a time, in the order of
    the TODO lines. Remember: a tensor used twice receives the sum of both
    branches; a broadcast in the forward pass is a sum in the backward pass;
    dC must accumulate over repeated indices in Xb. Compute everything by
    hand with tensor operations (PyTorch's automatic differentiation is not
    allowed).
    """
    # BEGIN SOLUTION
    # loss = -logprobs[range(n), Yb].mean(): only the picked entries get a gradient
    dlogprobs = torch.zeros_like(logprobs)
    dlogprobs[range(n), Yb] = -1.0 / n
    # logprobs = probs.log()
    dprobs = (1.0 / probs) * dlogprobs
    # probs = counts * counts_sum_inv (counts_sum_inv is broadcast over the columns)
    dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
    # counts_sum_inv = counts_sum**-1
    dcounts_sum = -counts_sum**-2 * dcounts_sum_inv
    # counts feeds both probs and counts_sum = counts.sum(1): add both branches
    dcounts = counts_sum_inv * dprobs
    dcounts += torch.ones_like(counts) * dcounts_sum
    # counts = norm_logits.exp()
    dnorm_logits = counts * dcounts
    # norm_logits = logits - logit_maxes (logit_maxes is broadcast over the columns)
    dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)
    dlogits = dnorm_logits.clone()
    # logit_maxes = logits.max(1, keepdim=True).values: routes to the arg-max only
    dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
    # logits = h @ W2 + b2
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    # h = torch.tanh(hpreact)
    dhpreact = (1.0 - h**2) * dh
    # hpreact = bngain * bnraw + bnbias
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dbnraw = bngain * dhpreact
    # bnraw = bndiff * bnvar_inv
    dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
    # bnvar_inv = (bnvar + 1e-5)**-0.5
    dbnvar = -0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv
    # bnvar = 1/(n-1) * bndiff2.sum(0, keepdim=True)
    dbndiff2 = 1.0 / (n - 1) * torch.ones_like(bndiff2) * dbnvar
    # bndiff feeds both bnraw and bndiff2 = bndiff**2: add both branches
    dbndiff = bnvar_inv * dbnraw
    dbndiff += 2 * bndiff * dbndiff2
    # bndiff = hprebn - bnmeani (bnmeani is broadcast over the rows)
    dbnmeani = -dbndiff.sum(0, keepdim=True)
    # hprebn feeds both bndiff and bnmeani = 1/n * hprebn.sum(0): add both branches
    dhprebn = dbndiff.clone()
    dhprebn += 1.0 / n * torch.ones_like(hprebn) * dbnmeani
    # hprebn = embcat @ W1 + b1
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    # embcat = emb.view(emb.shape[0], -1)
    demb = dembcat.view(emb.shape)
    # emb = C[Xb]: every use of a row of C adds to its gradient
    dC = torch.zeros_like(C)
    dC.index_add_(0, Xb.reshape(-1), demb.reshape(-1, C.shape[1]))
    # END SOLUTION
    return {
        "logprobs": dlogprobs, "probs": dprobs, "counts_sum_inv": dcounts_sum_inv,
        "counts_sum": dcounts_sum, "counts": dcounts, "norm_logits": dnorm_logits,
        "logit_maxes": dlogit_maxes, "logits": dlogits, "h": dh, "W2": dW2, "b2": db2,
        "hpreact": dhpreact, "bngain": dbngain, "bnbias": dbnbias, "bnraw": dbnraw,
        "bnvar_inv": dbnvar_inv, "bnvar": dbnvar, "bndiff2": dbndiff2, "bndiff": dbndiff,
        "bnmeani": dbnmeani, "hprebn": dhprebn, "embcat": dembcat, "W1": dW1, "b1": db1,
        "emb": demb, "C": dC,
    }
