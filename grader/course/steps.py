"""The lecture's backward pass, step by step: each gradient's local rule beside the forward pass.

micrograd's layout: grader.course.mlp is the forward pass, and here is each
step's backward rule, as code (`STEPS`, for the feedback: cascades, carrying a
known mistake down to a one-go exercise's checks) and as the lecture writes it
(`RULES`: the forward line, the rule in words, the worked code, for the hint
levels and the near-miss search), plus the worked one-go answers of the
lecture's exercises 2 to 4 and the embedding.

Not in course/mlp.py, on purpose: mlp.py is staged into the sandbox (the
worker runs the forward pass of a trajectory check), and these rules are the
answer key of exercise 1, which must stay out of the sandbox's reach.
"""

from __future__ import annotations  # (annotations name torch.Tensor: not evaluated, so torch is not imported)

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from grader.course.misconception import Worked
from grader.course.mlp import BN_EPS
from grader.course.mlp import ATOMIC


class _OnUse:
    """A module imported on its first use: the exercise definitions import this file (their
    misconceptions are built from these rules), and reading them (the command line, the config)
    must not pay for torch."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


torch = _OnUse("torch")
F = _OnUse("torch.nn.functional")

# ---------------------------------------------------------------------------
# Forward tensors and gradients by name, for the rules and the misconceptions.


class Vars:
    """`x.probs` is a forward tensor, `x.dprobs` a gradient, `x.n` and `x.vocab_size` ints."""

    def __init__(self, forward: dict, grads: dict, ints: dict):
        self._forward, self._grads, self._ints = forward, grads, ints

    def __getattr__(self, name: str):
        if name.startswith("d") and name[1:] in self._grads:
            return self._grads[name[1:]]
        if name in self._forward:
            return self._forward[name]
        if name in self._ints:
            return self._ints[name]
        raise AttributeError(name)


def one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, like.shape[1]).to(like.dtype)


def scatter_dC(C, Xb, demb):
    return torch.zeros_like(C).index_add_(0, Xb.reshape(-1), demb.reshape(-1, C.shape[1]))


# ---------------------------------------------------------------------------
# The backward pass of the lecture, one local rule per gradient, in its order.


@dataclass(frozen=True)
class Step:
    upstream: tuple[str, ...]               # the gradients this rule reads
    rule: Callable[[Vars], torch.Tensor]


STEPS: dict[str, Step] = {
    "logprobs": Step((), lambda x: -one_hot(x.Yb, x.logprobs) / x.n),
    "probs": Step(("logprobs",), lambda x: x.dlogprobs / x.probs),
    "counts_sum_inv": Step(("probs",), lambda x: (x.counts * x.dprobs).sum(1, keepdim=True)),
    "counts_sum": Step(("counts_sum_inv",), lambda x: -x.counts_sum**-2 * x.dcounts_sum_inv),
    "counts": Step(("probs", "counts_sum"), lambda x: x.counts_sum_inv * x.dprobs + x.dcounts_sum),
    "norm_logits": Step(("counts",), lambda x: x.counts * x.dcounts),
    "logit_maxes": Step(("norm_logits",), lambda x: -x.dnorm_logits.sum(1, keepdim=True)),
    "logits": Step(("norm_logits", "logit_maxes"),
                   lambda x: x.dnorm_logits + one_hot(x.logits.argmax(1), x.logits) * x.dlogit_maxes),
    "h": Step(("logits",), lambda x: x.dlogits @ x.W2.T),
    "W2": Step(("logits",), lambda x: x.h.T @ x.dlogits),
    "b2": Step(("logits",), lambda x: x.dlogits.sum(0)),
    "hpreact": Step(("h",), lambda x: (1.0 - x.h**2) * x.dh),
    "bngain": Step(("hpreact",), lambda x: (x.bnraw * x.dhpreact).sum(0, keepdim=True)),
    "bnbias": Step(("hpreact",), lambda x: x.dhpreact.sum(0, keepdim=True)),
    "bnraw": Step(("hpreact",), lambda x: x.bngain * x.dhpreact),
    "bnvar_inv": Step(("bnraw",), lambda x: (x.bndiff * x.dbnraw).sum(0, keepdim=True)),
    "bnvar": Step(("bnvar_inv",), lambda x: -0.5 * (x.bnvar + BN_EPS) ** -1.5 * x.dbnvar_inv),
    "bndiff2": Step(("bnvar",), lambda x: torch.ones_like(x.bndiff2) * x.dbnvar / (x.n - 1)),
    "bndiff": Step(("bnraw", "bndiff2"), lambda x: x.bnvar_inv * x.dbnraw + 2 * x.bndiff * x.dbndiff2),
    "bnmeani": Step(("bndiff",), lambda x: -x.dbndiff.sum(0, keepdim=True)),
    "hprebn": Step(("bndiff", "bnmeani"), lambda x: x.dbndiff + x.dbnmeani / x.n),
    "embcat": Step(("hprebn",), lambda x: x.dhprebn @ x.W1.T),
    "W1": Step(("hprebn",), lambda x: x.embcat.T @ x.dhprebn),
    "b1": Step(("hprebn",), lambda x: x.dhprebn.sum(0)),
    "emb": Step(("embcat",), lambda x: x.dembcat.reshape(x.emb.shape)),
    "C": Step(("emb",), lambda x: scatter_dC(x.C, x.Xb, x.demb)),
}
assert tuple(STEPS) == ATOMIC


def _closure(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out = {}
    for name in ATOMIC:  # ATOMIC is in backward order, so parents come first
        out[name] = set(edges[name]).union(*(out[p] for p in edges[name]))
    return out


ANCESTORS = _closure({k: set(s.upstream) for k, s in STEPS.items()})
DESCENDANTS = {k: {d for d in ATOMIC if k in ANCESTORS[d]} for k in ATOMIC}


def propagate(forward: dict, grads: dict, ints: dict, at: str, value: torch.Tensor) -> dict:
    """Replace d`at` by `value` and recompute every gradient after it with the right rules."""
    grads = dict(grads)
    grads[at] = value
    x = Vars(forward, grads, ints)
    for name in ATOMIC:
        if name in DESCENDANTS[at]:
            grads[name] = STEPS[name].rule(x)
    return grads


# ---------------------------------------------------------------------------
# The same rules as the lecture writes them (grader.feedback.hint_levels, grader.feedback.nearmiss).

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

# The worked answers of the exercises computed in one go (each exercise's definition names its own).
CROSS_ENTROPY = Worked("the gradient of the mean cross entropy is (softmax(logits) - one_hot(Yb)) / n: the softmax "
                       "over each row (dim 1), 1 taken off at each row's own target, divided by n",
                       _CROSS_ENTROPY)
BATCHNORM = Worked("with bnraw = (hprebn - mean) * bnvar_inv and Bessel's n-1 in the variance, dhprebn = "
                   "bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n/(n-1) * bnraw * "
                   "(dhpreact * bnraw).sum(0)); both sums run over the batch, dim 0", _BATCHNORM)
EMBEDDING = Worked("every use of a row of C in Xb adds its row of demb to that row of dC; repeated indices add "
                   "up and unused rows stay 0", _EMBEDDING)
TRAIN = Worked("the cross entropy in one go, the output layer, tanh, batch norm in one go, the first layer "
               "and the embedding, each with its local rule", _TRAIN, by_step=True)
