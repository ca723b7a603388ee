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
    dlogprobs = None  # TODO
    dprobs = None  # TODO
    dcounts_sum_inv = None  # TODO
    dcounts_sum = None  # TODO
    dcounts = None  # TODO
    dnorm_logits = None  # TODO
    dlogit_maxes = None  # TODO
    dlogits = None  # TODO
    dh = None  # TODO
    dW2 = None  # TODO
    db2 = None  # TODO
    dhpreact = None  # TODO
    dbngain = None  # TODO
    dbnbias = None  # TODO
    dbnraw = None  # TODO
    dbnvar_inv = None  # TODO
    dbnvar = None  # TODO
    dbndiff2 = None  # TODO
    dbndiff = None  # TODO
    dbnmeani = None  # TODO
    dhprebn = None  # TODO
    dembcat = None  # TODO
    dW1 = None  # TODO
    db1 = None  # TODO
    demb = None  # TODO
    dC = None  # TODO
    return {
        "logprobs": dlogprobs, "probs": dprobs, "counts_sum_inv": dcounts_sum_inv,
        "counts_sum": dcounts_sum, "counts": dcounts, "norm_logits": dnorm_logits,
        "logit_maxes": dlogit_maxes, "logits": dlogits, "h": dh, "W2": dW2, "b2": db2,
        "hpreact": dhpreact, "bngain": dbngain, "bnbias": dbnbias, "bnraw": dbnraw,
        "bnvar_inv": dbnvar_inv, "bnvar": dbnvar, "bndiff2": dbndiff2, "bndiff": dbndiff,
        "bnmeani": dbnmeani, "hprebn": dhprebn, "embcat": dembcat, "W1": dW1, "b1": db1,
        "emb": demb, "C": dC,
    }
