"""The lecture's MLP, variable for variable: its facts (names, order, shape) and its forward pass.

Trusted grader code that imports only torch, and torch only when a function runs (the command
line and the config read the names without it): the grading process uses it to build cases and
autograd references, and the worker uses it for the forward passes of a trajectory check.
"""

PARAMS = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")

# Every gradient of the lecture's exercise 1, in the order of its backward pass.
ATOMIC = (
    "logprobs", "probs", "counts_sum_inv", "counts_sum", "counts",
    "norm_logits", "logit_maxes", "logits", "h", "W2", "b2", "hpreact",
    "bngain", "bnbias", "bnraw", "bnvar_inv", "bnvar", "bndiff2", "bndiff",
    "bnmeani", "hprebn", "embcat", "W1", "b1", "emb", "C",
)

# The forward pass's tensors by their lecture names: the keyword arguments of backward_atomic and
# backward_fast (plus the int `n`), and what `forward` returns (plus `loss`).
FORWARD_ARGS = (
    "Xb", "Yb", *PARAMS,
    "emb", "embcat", "hprebn", "bnmeani", "bndiff", "bndiff2", "bnvar",
    "bnvar_inv", "bnraw", "hpreact", "h", "logits", "logit_maxes",
    "norm_logits", "counts", "counts_sum", "counts_sum_inv", "probs", "logprobs",
)

# The lecture's own shape (its public `lecture` case).
LECTURE_SHAPE = {"n": 32, "block": 3, "n_embd": 10, "n_hidden": 64, "vocab": 27}

BN_EPS = 1e-5


def init_params(generator, *, vocab, block, n_embd, n_hidden, dtype):
    """The lecture's deliberately non-standard initialisation, all from `generator`."""
    import torch

    def randn(*shape):
        return torch.randn(shape, generator=generator, dtype=dtype)

    return {
        "C": randn(vocab, n_embd),
        "W1": randn(n_embd * block, n_hidden) * (5 / 3) / (n_embd * block) ** 0.5,
        "b1": randn(n_hidden) * 0.1,
        "W2": randn(n_hidden, vocab) * 0.1,
        "b2": randn(vocab) * 0.1,
        "bngain": randn(1, n_hidden) * 0.1 + 1.0,
        "bnbias": randn(1, n_hidden) * 0.1,
    }


def forward(params, Xb, Yb):
    """The chunked forward pass; returns every intermediate and `loss`."""
    import torch

    C, W1, b1, W2, b2 = (params[k] for k in ("C", "W1", "b1", "W2", "b2"))
    bngain, bnbias = params["bngain"], params["bnbias"]
    n = Xb.shape[0]
    emb = C[Xb]
    embcat = emb.view(emb.shape[0], -1)
    hprebn = embcat @ W1 + b1
    bnmeani = 1 / n * hprebn.sum(0, keepdim=True)
    bndiff = hprebn - bnmeani
    bndiff2 = bndiff**2
    bnvar = 1 / (n - 1) * bndiff2.sum(0, keepdim=True)
    bnvar_inv = (bnvar + BN_EPS) ** -0.5
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    logit_maxes = logits.max(1, keepdim=True).values
    norm_logits = logits - logit_maxes
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdim=True)
    counts_sum_inv = counts_sum**-1
    probs = counts * counts_sum_inv
    logprobs = probs.log()
    loss = -logprobs[torch.arange(n), Yb].mean()
    local = dict(locals())
    tensors = {name: local[name] for name in FORWARD_ARGS if name not in params}
    return {**params, **tensors, "loss": loss}
