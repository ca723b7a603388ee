"""What a hint can escalate to: each step's local rule and its worked expression.

A diagnosed mistake offers up to three levels: a nudge (where to look: the
diagnosis's own message), the local rule (the derivative of that step of the
forward pass, in the lecture's notation), then the worked expression (the
lecture's code for the step). `RULES` has them for every gradient of
exercise 1; `ONE_GO` for the exercises computed in one go. The worked code is
also what grader.feedback.nearmiss mutates to find a student's single slip, so it is
written as the lecture writes it, and a test runs it against autograd.
"""

# gradient -> (the forward line it comes from, the local rule, the worked code)
RULES: dict[str, tuple[str, str, str]] = {
    "logprobs": ("loss = -logprobs[range(n), Yb].mean()",
                 "only the n picked entries enter the loss, each with weight -1/n (the mean); every other "
                 "entry of logprobs has gradient 0",
                 "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n"),
    "probs": ("logprobs = probs.log()", "d/dx log(x) = 1/x, times the incoming dlogprobs (chain rule)",
              "dprobs = 1.0 / probs * dlogprobs"),
    "counts_sum_inv": ("probs = counts * counts_sum_inv",
                       "d(a*b)/db = a, and counts_sum_inv (n, 1) is broadcast over the columns, so its "
                       "gradient sums over dim 1",
                       "dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)"),
    "counts_sum": ("counts_sum_inv = counts_sum**-1", "d/dx x**-1 = -x**-2, times dcounts_sum_inv",
                   "dcounts_sum = -counts_sum ** (-2) * dcounts_sum_inv"),
    "counts": ("probs = counts * counts_sum_inv and counts_sum = counts.sum(1, keepdims=True)",
               "counts is used twice, so its gradient adds both branches: counts_sum_inv * dprobs, and "
               "dcounts_sum broadcast back over the columns the sum ran over",
               "dcounts = counts_sum_inv * dprobs\ndcounts += torch.ones_like(counts) * dcounts_sum"),
    "norm_logits": ("counts = norm_logits.exp()", "d/dx exp(x) = exp(x) = counts, times dcounts",
                    "dnorm_logits = counts * dcounts"),
    "logit_maxes": ("norm_logits = logits - logit_maxes",
                    "d(a-b)/db = -1, and logit_maxes (n, 1) is broadcast over the columns, so its gradient "
                    "is minus the sum over dim 1",
                    "dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)"),
    "logits": ("norm_logits = logits - logit_maxes and logit_maxes = logits.max(1, keepdim=True).values",
               "logits is used twice: d(a-b)/da = 1 passes dnorm_logits through, and the max routes "
               "dlogit_maxes to each row's arg-max only",
               "dlogits = dnorm_logits.clone()\n"
               "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes"),
    "h": ("logits = h @ W2 + b2", "for a matrix product, dA = dOut @ B.T (shapes must match h)",
          "dh = dlogits @ W2.T"),
    "W2": ("logits = h @ W2 + b2", "for a matrix product, dB = A.T @ dOut (shapes must match W2)",
           "dW2 = h.T @ dlogits"),
    "b2": ("logits = h @ W2 + b2", "b2 is broadcast over the rows, so its gradient sums dlogits over dim 0",
           "db2 = dlogits.sum(0)"),
    "hpreact": ("h = torch.tanh(hpreact)", "d/dx tanh(x) = 1 - tanh(x)**2 = 1 - h**2, times dh",
                "dhpreact = (1.0 - h ** 2) * dh"),
    "bngain": ("hpreact = bngain * bnraw + bnbias",
               "d(a*b)/da = b, and bngain (1, n_hidden) is broadcast over the rows, so sum over dim 0",
               "dbngain = (bnraw * dhpreact).sum(0, keepdim=True)"),
    "bnbias": ("hpreact = bngain * bnraw + bnbias", "bnbias is broadcast over the rows: sum dhpreact over dim 0",
               "dbnbias = dhpreact.sum(0, keepdim=True)"),
    "bnraw": ("hpreact = bngain * bnraw + bnbias", "d(a*b)/db = a: bngain times dhpreact",
              "dbnraw = bngain * dhpreact"),
    "bnvar_inv": ("bnraw = bndiff * bnvar_inv",
                  "d(a*b)/db = a, and bnvar_inv (1, n_hidden) is broadcast over the rows, so sum over dim 0",
                  "dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)"),
    "bnvar": ("bnvar_inv = (bnvar + 1e-5)**-0.5", "d/dx (x + 1e-5)**-0.5 = -0.5 * (x + 1e-5)**-1.5, times dbnvar_inv",
              "dbnvar = -0.5 * (bnvar + 1e-05) ** (-1.5) * dbnvar_inv"),
    "bndiff2": ("bnvar = 1/(n-1) * bndiff2.sum(0, keepdim=True)",
                "the sum over dim 0 copies dbnvar back to every row, times Bessel's 1/(n-1)",
                "dbndiff2 = 1.0 / (n - 1) * torch.ones_like(bndiff2) * dbnvar"),
    "bndiff": ("bnraw = bndiff * bnvar_inv and bndiff2 = bndiff**2",
               "bndiff is used twice, so add both branches: bnvar_inv * dbnraw, and d/dx x**2 = 2x times dbndiff2",
               "dbndiff = bnvar_inv * dbnraw\ndbndiff += 2 * bndiff * dbndiff2"),
    "bnmeani": ("bndiff = hprebn - bnmeani",
                "d(a-b)/db = -1, and bnmeani (1, n_hidden) is broadcast over the rows: minus the sum over dim 0",
                "dbnmeani = -dbndiff.sum(0, keepdim=True)"),
    "hprebn": ("bndiff = hprebn - bnmeani and bnmeani = 1/n * hprebn.sum(0, keepdim=True)",
               "hprebn is used twice, so add both branches: dbndiff, and the mean's 1/n * dbnmeani copied "
               "back to every row",
               "dhprebn = dbndiff.clone()\ndhprebn += 1.0 / n * torch.ones_like(hprebn) * dbnmeani"),
    "embcat": ("hprebn = embcat @ W1 + b1", "for a matrix product, dA = dOut @ B.T (shapes must match embcat)",
               "dembcat = dhprebn @ W1.T"),
    "W1": ("hprebn = embcat @ W1 + b1", "for a matrix product, dB = A.T @ dOut (shapes must match W1)",
           "dW1 = embcat.T @ dhprebn"),
    "b1": ("hprebn = embcat @ W1 + b1", "b1 is broadcast over the rows: sum dhprebn over dim 0",
           "db1 = dhprebn.sum(0)"),
    "emb": ("embcat = emb.view(emb.shape[0], -1)", "a view moves no numbers: view dembcat back as emb's shape",
            "demb = dembcat.view(emb.shape)"),
    "C": ("emb = C[Xb]", "every use of a row of C adds its row of demb to that row's gradient (repeated "
          "indices add up)",
          "dC = torch.zeros_like(C)\ndC.index_add_(0, Xb.reshape(-1), demb.reshape(-1, C.shape[1]))"),
}

_CROSS_ENTROPY = ("dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n")
_BATCHNORM = ("dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * "
              "(dhpreact * bnraw).sum(0))")
_EMBEDDING = ("dC = torch.zeros((vocab_size, demb.shape[-1]), dtype=demb.dtype, device=demb.device)\n"
              "dC.index_add_(0, Xb.reshape(-1), demb.reshape(-1, demb.shape[-1]))")
_TRAIN = "\n".join([
    _CROSS_ENTROPY,
    "dh = dlogits @ W2.T", "dW2 = h.T @ dlogits", "db2 = dlogits.sum(0)",
    "dhpreact = (1.0 - h ** 2) * dh",
    "dbngain = (bnraw * dhpreact).sum(0, keepdim=True)", "dbnbias = dhpreact.sum(0, keepdim=True)",
    _BATCHNORM,
    "dembcat = dhprebn @ W1.T", "dW1 = embcat.T @ dhprebn", "db1 = dhprebn.sum(0)",
    "demb = dembcat.view(emb.shape)",
    "dC = torch.zeros_like(C)", "dC.index_add_(0, Xb.reshape(-1), demb.reshape(-1, C.shape[1]))",
])

# exercise -> (the rule of the whole exercise, its worked code; `n = ...` is set before it runs)
ONE_GO: dict[str, tuple[str, str]] = {
    "cross_entropy": ("the gradient of the mean cross entropy is (softmax(logits) - one_hot(Yb)) / n: the softmax "
                      "over each row (dim 1), 1 taken off at each row's own target, divided by n",
                      _CROSS_ENTROPY),
    "batchnorm": ("with bnraw = (hprebn - mean) * bnvar_inv and Bessel's n-1 in the variance, dhprebn = "
                  "bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n/(n-1) * bnraw * "
                  "(dhpreact * bnraw).sum(0)); both sums run over the batch, dim 0", _BATCHNORM),
    "embedding": ("every use of a row of C in Xb adds its row of demb to that row of dC; repeated indices add "
                  "up and unused rows stay 0", _EMBEDDING),
    "train": ("the cross entropy in one go, the output layer, tanh, batch norm in one go, the first layer "
              "and the embedding, each with its local rule", _TRAIN),
}


def levels(first: str, ex_id: str, at: str | None) -> list[str]:
    """The escalating hints of a mistake at gradient `at`: `first`, then the local rule and the worked code."""
    out = [first]
    if ex_id == "atomic" and at in RULES:
        forward, rule, code = RULES[at]
        out += [f"The local rule: {forward}; {rule}.", "The worked expression: " + "; ".join(code.splitlines())]
    elif ex_id in ONE_GO:
        rule, code = ONE_GO[ex_id]
        if at in RULES and ex_id == "train":
            forward, step_rule, step_code = RULES[at]
            out += [f"The local rule: {forward}; {step_rule}.",
                    "The worked expression: " + "; ".join(step_code.splitlines())]
        else:
            out += [f"The rule: {rule}.", "The worked expression: " + "; ".join(code.splitlines())]
    return out
