"""Feedback that names the mistake: a hint for every failing check.

Runs in the grading process, on the student's decoded answers, after the
comparison. For a failing gradient of one case, in this order:

1. cascades (exercise 1): the step that computes it is right given the
   student's own upstream answers (replayed with the local rules in
   `STEPS`), so the error comes from upstream: "First fix dX", X being the
   first wrong gradient of the backward pass it depends on;
2. the catalogue of known misconceptions of the lecture (`CATALOGUE`): each
   entry builds, from the case's true gradients (and, in exercise 1, from
   the student's own upstream answers too), the gradient that the wrong
   formula gives; when the student's answer matches it on the grader's
   tolerance, the entry's message is the hint. An entry sits at the
   gradient where the mistake is made (`at`); in the one-go exercises
   (cross entropy, batch norm, train) the wrong gradient is carried down to
   the exercise's checks with `STEPS`;
3. in exercise 1, a gradient equal to the student's gradient of a later
   step that reads it (one tensor under two names: a missing .clone()),
   and the chain rule forgotten;
4. generic patterns: NaN or inf (and where they first appear), a constant
   factor (named when it is n, 1/n, n-1, n/(n-1), ...), the wrong sign,
   transposed, right values in the wrong shape or places, a broadcast that
   was not summed, the gradient of a different tensor, all zeros; then
   near misses (grader.feedback.nearmiss): the one slip in the step's worked code
   (an operator, a constant, a dim, a .T, a term, a variable) that gives
   the student's answer; only then the vague patterns (an unnamed factor,
   float32 precision, "close"), which name no cause.

A case where the function raised gets, on every check, what failed on the
line that raised and its repair, when one edit confirms it (grader.feedback.nearmiss).
Every diagnosis offers escalating levels (`hint_levels`: the hint, the local
rule, the worked expression; grader.feedback.hint_levels).

A check's summary hint adds what only shows across cases: right on the
lecture's shape but wrong (or crashing) on the others. Hidden cases get a
fixed label per kind of mistake (`Diagnosis.label`), never a value or a shape.

A course adds its own misconceptions by appending `Misconception` entries to
`CATALOGUE` (or with `register`).
"""

import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product

import torch
import torch.nn.functional as F

from grader.feedback import nearmiss
from grader.scoring.compare import ZERO_FLOOR, same_up_to_ones
from grader.config import ShapeSpec
from grader.course.mlp import ATOMIC
from grader.course.spec import TRAJECTORY, Exercise
from grader.feedback.hint_levels import levels as hint_levels
from grader.course.mlp import BN_EPS

# ---------------------------------------------------------------------------
# Forward tensors and gradients by name, for the rules and the catalogue.


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


def _one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, like.shape[1]).to(like.dtype)


def _scatter_dC(C, Xb, demb):
    return torch.zeros_like(C).index_add_(0, Xb.reshape(-1), demb.reshape(-1, C.shape[1]))


# ---------------------------------------------------------------------------
# The backward pass of the lecture, one local rule per gradient, in its order.


@dataclass(frozen=True)
class Step:
    upstream: tuple[str, ...]               # the gradients this rule reads
    rule: Callable[[Vars], torch.Tensor]


STEPS: dict[str, Step] = {
    "logprobs": Step((), lambda x: -_one_hot(x.Yb, x.logprobs) / x.n),
    "probs": Step(("logprobs",), lambda x: x.dlogprobs / x.probs),
    "counts_sum_inv": Step(("probs",), lambda x: (x.counts * x.dprobs).sum(1, keepdim=True)),
    "counts_sum": Step(("counts_sum_inv",), lambda x: -x.counts_sum**-2 * x.dcounts_sum_inv),
    "counts": Step(("probs", "counts_sum"), lambda x: x.counts_sum_inv * x.dprobs + x.dcounts_sum),
    "norm_logits": Step(("counts",), lambda x: x.counts * x.dcounts),
    "logit_maxes": Step(("norm_logits",), lambda x: -x.dnorm_logits.sum(1, keepdim=True)),
    "logits": Step(("norm_logits", "logit_maxes"),
                   lambda x: x.dnorm_logits + _one_hot(x.logits.argmax(1), x.logits) * x.dlogit_maxes),
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
    "C": Step(("emb",), lambda x: _scatter_dC(x.C, x.Xb, x.demb)),
}
assert tuple(STEPS) == ATOMIC


def _closure(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out = {}
    for name in ATOMIC:  # ATOMIC is in backward order, so parents come first
        out[name] = set(edges[name]).union(*(out[p] for p in edges[name]))
    return out


ANCESTORS = _closure({k: set(s.upstream) for k, s in STEPS.items()})
DESCENDANTS = {k: {d for d in ATOMIC if k in ANCESTORS[d]} for k in ATOMIC}

# The gradients each one-go exercise computes on its way to its checks (its
# other inputs, such as dhpreact for batch norm, come from the case).
PATHS = {
    "atomic": set(ATOMIC),
    "cross_entropy": set(ATOMIC[:ATOMIC.index("logits") + 1]),
    "batchnorm": {"bnraw", "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani", "hprebn"},
    "embedding": {"C"},
    "train": set(ATOMIC),
}


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
# The catalogue of known misconceptions.


@dataclass(frozen=True)
class Misconception:
    """A known wrong formula: where it is made, how to build its gradient, what to tell the student.

    `build(x)` returns the wrong d`at` (or a list of variants) from `x`: the
    case's forward tensors and true gradients (`x.dprobs`, ...). `message`
    is the hint on d`at` itself; `downstream` (with `{check}`) the hint on a
    gradient a one-go exercise computes from it. `title` is a short, generic
    name, the only part shown for hidden cases. `exercises` limits where the
    entry applies (default: every exercise whose backward pass computes
    d`at`; in exercise 1 only the check d`at` itself).
    """

    id: str
    at: str
    title: str
    build: Callable[[Vars], torch.Tensor | Sequence[torch.Tensor]]
    message: str
    downstream: str | None = None
    exercises: tuple[str, ...] | None = None

    def applies(self, ex_id: str, check: str) -> bool:
        if self.exercises is not None and ex_id not in self.exercises:
            return False
        if self.at not in PATHS.get(ex_id, ()):
            return False
        if check == self.at:
            return True
        return ex_id != "atomic" and check in DESCENDANTS[self.at]

    def hint(self, check: str) -> str:
        if check == self.at:
            return self.message
        if self.downstream:
            return self.downstream.format(check=check)
        return f"d{check} is what you get when d{self.at} has a known mistake: {self.message}"


def _closed_form(x: Vars, reduce: str, dim: int, dim2: int, bessel: float | None = None) -> torch.Tensor:
    """Exercise 3's closed form with its batch reductions over `dim` and `dim2`, Bessel's factor `bessel`."""
    dh, n = x.dhpreact, x.n
    bessel = n / (n - 1) if bessel is None else bessel
    if reduce == "sum":
        return x.bngain * x.bnvar_inv / n * (
            n * dh - dh.sum(dim, keepdim=True) - bessel * x.bnraw * (dh * x.bnraw).sum(dim2, keepdim=True))
    return x.bngain * x.bnvar_inv * (
        dh - dh.mean(dim, keepdim=True) - bessel * x.bnraw * (dh * x.bnraw).mean(dim2, keepdim=True))


def _column_targets(t: torch.Tensor, Yb: torch.Tensor, value: float) -> torch.Tensor:
    """`t[:, Yb] = value`: the whole column of every target, the classic indexing slip."""
    t = t.clone()
    t[:, Yb] = value
    return t


def _column_minus_one(probs: torch.Tensor, Yb: torch.Tensor) -> torch.Tensor:
    """`probs[:, Yb] -= 1`: 1 taken off whole columns instead of each row's own target."""
    probs = probs.clone()
    probs[:, Yb] -= 1
    return probs


def _last_write_dC(x: Vars, order: str) -> torch.Tensor:
    """dC when repeated indices overwrite each other instead of adding up."""
    dC = torch.zeros_like(x.C)
    Xb, demb = x.Xb.reshape(-1), x.demb.reshape(-1, x.C.shape[1])
    if order == "first":
        Xb, demb = Xb.flip(0), demb.flip(0)
    dC[Xb] = demb
    return dC


CATALOGUE: list[Misconception] = [
    # --- the loss and the cross entropy -------------------------------------------------
    Misconception(
        "dlogprobs_missing_1_over_n", "logprobs", "the mean's 1/n is missing from dlogprobs",
        lambda x: x.n * x.dlogprobs,
        "dlogprobs is n times too large: the loss is the mean over the n rows, so each picked "
        "entry gets -1/n, not -1."),
    Misconception(
        "dlogprobs_everywhere", "logprobs", "every entry of dlogprobs got a gradient",
        lambda x: [torch.full_like(x.logprobs, -1.0 / x.n),
                   torch.full_like(x.logprobs, -1.0 / (x.n * x.logprobs.shape[1]))],
        "only the picked entries logprobs[range(n), Yb] enter the loss: dlogprobs is -1/n at those "
        "and 0 everywhere else."),
    Misconception(
        "dlogprobs_column_index", "logprobs", "targets indexed with [:, Yb] instead of [range(n), Yb]",
        lambda x: _column_targets(torch.zeros_like(x.logprobs), x.Yb, -1.0 / x.n),
        "dlogprobs[:, Yb] fills whole columns; row i only picks its own target: write "
        "dlogprobs[range(n), Yb] = -1.0/n."),
    Misconception(
        "dlogits_missing_1_over_n", "logits", "the mean's 1/n is missing from dlogits",
        lambda x: x.n * x.dlogits,
        "dlogits is n times too large: the loss is the mean over the n rows, so divide "
        "softmax(logits) - one_hot(Yb) by n.",
        "d{check} is n times too large because dlogits misses the mean's 1/n: "
        "dlogits = (softmax(logits) - one_hot(Yb)) / n.",
        exercises=("cross_entropy", "train")),
    Misconception(
        "dlogits_missing_target", "logits", "the -1 at the targets is missing from dlogits",
        lambda x: x.probs / x.n,
        "dlogits is softmax(logits)/n without the -1 at each row's target: subtract 1 at "
        "[range(n), Yb] before dividing by n.",
        "d{check} comes from a dlogits without the -1 at the targets: "
        "dlogits = (softmax(logits) - one_hot(Yb)) / n.",
        exercises=("cross_entropy", "train")),
    Misconception(
        "dlogits_column_index", "logits", "targets indexed with [:, Yb] instead of [range(n), Yb]",
        lambda x: _column_minus_one(x.probs, x.Yb) / x.n,
        "dlogits[:, Yb] -= 1 subtracts 1 in whole columns; row i only has its own target: "
        "use dlogits[range(n), Yb] -= 1.",
        "d{check} comes from a dlogits with [:, Yb] instead of [range(n), Yb]: "
        "subtract 1 only at each row's own target.",
        exercises=("cross_entropy", "train")),
    Misconception(
        "softmax_wrong_dim", "logits", "softmax over the wrong dimension",
        lambda x: [(F.softmax(x.logits, 0) - _one_hot(x.Yb, x.logits)) / x.n,
                   (x.counts / x.counts.sum(0, keepdim=True) - _one_hot(x.Yb, x.logits)) / x.n],
        "the softmax in dlogits must normalise each row (dim 1, over the vocabulary), not each "
        "column (dim 0, over the batch).",
        "d{check} comes from a softmax over dim 0 (the batch): normalise each row of the logits "
        "(dim 1) instead.",
        exercises=("cross_entropy", "train")),
    Misconception(
        "dcounts_missing_branch", "counts", "dcounts misses one of its two branches",
        lambda x: [x.counts_sum_inv * x.dprobs, x.dcounts_sum.expand_as(x.counts)],
        "dcounts misses a branch: counts is used twice (in probs = counts * counts_sum_inv and in "
        "counts_sum = counts.sum(1)), so dcounts = counts_sum_inv * dprobs + dcounts_sum.",
        exercises=("atomic", "cross_entropy")),
    # --- the output layer and tanh -------------------------------------------------------
    Misconception(
        "tanh_hpreact", "hpreact", "tanh derivative taken at hpreact instead of h",
        lambda x: (1.0 - x.hpreact**2) * x.dh,
        "the derivative of tanh is 1 - tanh(x)**2 = 1 - h**2, not 1 - hpreact**2: use the "
        "output h = tanh(hpreact).",
        "d{check} comes from a dhpreact computed with 1 - hpreact**2: the derivative of tanh is "
        "1 - h**2, where h = tanh(hpreact)."),
    Misconception(
        "tanh_no_chain", "hpreact", "dh not multiplied in (chain rule)",
        lambda x: 1.0 - x.h**2,
        "dhpreact is only the local derivative 1 - h**2: multiply it by the incoming gradient dh "
        "(chain rule).",
        "d{check} comes from a dhpreact that is only 1 - h**2: multiply by dh (chain rule)."),
    # --- batch norm ------------------------------------------------------------------------
    Misconception(
        "bngain_missing", "bnraw", "bngain is missing from dbnraw",
        lambda x: x.dhpreact,
        "dbnraw forgets bngain: hpreact = bngain * bnraw + bnbias, so dbnraw = bngain * dhpreact.",
        "d{check} forgets bngain: hpreact = bngain * bnraw + bnbias, so every batch-norm gradient "
        "below it carries the factor bngain (dbnraw = bngain * dhpreact)."),
    Misconception(
        "missing_eps", "bnvar", "the 1e-5 is missing from dbnvar",
        lambda x: -0.5 * x.bnvar**-1.5 * x.dbnvar_inv,
        "dbnvar forgets the 1e-5: bnvar_inv = (bnvar + 1e-5)**-0.5, so "
        "dbnvar = -0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv.",
        exercises=("atomic",)),
    Misconception(
        "no_bessel", "bndiff2", "Bessel's correction (1/(n-1)) is missing",
        lambda x: torch.ones_like(x.bndiff2) * x.dbnvar / x.n,
        "dbndiff2 uses 1/n, but the forward pass computes the variance with Bessel's correction, "
        "bnvar = 1/(n-1) * bndiff2.sum(0): use 1/(n-1).",
        "d{check} comes from batch norm without Bessel's correction: the variance divides by n-1, "
        "so the closed form has n/(n-1) * bnraw * (dhpreact * bnraw).sum(0)."),
    Misconception(
        "bessel_inverted", "hprebn", "Bessel's factor n/(n-1) turned upside down",
        lambda x: _closed_form(x, "sum", 0, 0, (x.n - 1) / x.n),
        "dhprebn uses (n-1)/n where the closed form has n/(n-1): the variance divides by n-1, so its "
        "branch is n/(n-1) * bnraw * (dhpreact * bnraw).sum(0).",
        "d{check} comes from batch norm with (n-1)/n where the closed form has n/(n-1) (the variance "
        "divides by n-1).",
        exercises=("batchnorm", "train")),
    Misconception(
        "square_derivative", "bndiff", "the 2 of d(x**2)/dx is missing",
        lambda x: x.bnvar_inv * x.dbnraw + x.bndiff * x.dbndiff2,
        "the branch through bndiff2 = bndiff**2 needs the derivative 2 * bndiff: "
        "dbndiff = bnvar_inv * dbnraw + 2 * bndiff * dbndiff2.",
        exercises=("atomic",)),
    Misconception(
        "dbndiff_missing_branch", "bndiff", "dbndiff misses one of its two branches",
        lambda x: [x.bnvar_inv * x.dbnraw, 2 * x.bndiff * x.dbndiff2],
        "dbndiff misses a branch: bndiff is used twice (in bnraw = bndiff * bnvar_inv and in "
        "bndiff2 = bndiff**2), so dbndiff = bnvar_inv * dbnraw + 2 * bndiff * dbndiff2.",
        "d{check} misses batch norm's variance branch: bndiff also feeds the variance, which gives "
        "the term - n/(n-1) * bnraw * (dhpreact * bnraw).sum(0) of the closed form."),
    Misconception(
        "aliasing", "bndiff", "dbndiff changed in place through dhprebn (missing .clone())",
        lambda x: x.dhprebn,
        "dbndiff came back equal to dhprebn: dhprebn = dbndiff makes both names share one tensor, "
        "so dhprebn += ... also changed dbndiff. Write dhprebn = dbndiff.clone().",
        exercises=("atomic",)),
    Misconception(
        "dhprebn_missing_branch", "hprebn", "dhprebn misses one of its two branches",
        lambda x: [x.dbndiff, (x.dbnmeani / x.n).expand_as(x.hprebn)],
        "dhprebn misses a branch: hprebn is used twice (in bndiff = hprebn - bnmeani and in "
        "bnmeani = 1/n * hprebn.sum(0)), so dhprebn = dbndiff + dbnmeani / n (in the closed form: "
        "the term - dhpreact.sum(0)).",
        "d{check} misses batch norm's mean branch: the mean depends on hprebn too, which gives "
        "the term - dhpreact.sum(0) of the closed form."),
    Misconception(
        "mean_missing_1_over_n", "hprebn", "the mean's 1/n is missing from the bnmeani branch",
        lambda x: x.dbndiff + x.dbnmeani,
        "the branch through bnmeani = 1/n * hprebn.sum(0) needs the mean's 1/n: "
        "dhprebn = dbndiff + dbnmeani / n.",
        exercises=("atomic",)),
    Misconception(
        "closed_form_wrong_dim", "hprebn", "a batch-norm sum over the wrong dimension",
        lambda x: [_closed_form(x, r, d1, d2) for r in ("sum", "mean")
                   for d1, d2 in ((1, 0), (0, 1), (1, 1))],
        "the sums in batch norm's closed form run over the batch, dim 0 (dhpreact.sum(0), "
        "(dhpreact * bnraw).sum(0)), not over dim 1.",
        "d{check} comes from batch norm's closed form with a sum over dim 1: both sums run over "
        "the batch, dim 0.",
        exercises=("batchnorm", "train")),
    # --- the embedding ---------------------------------------------------------------------
    Misconception(
        "dC_no_accumulate", "C", "dC does not accumulate repeated indices",
        lambda x: [_last_write_dC(x, "last"), _last_write_dC(x, "first")],
        "dC keeps only one contribution per row: a character used several times in Xb must add up "
        "all its demb rows, and dC[Xb] += demb (or =) keeps only one. Use "
        "dC.index_add_(0, Xb.view(-1), demb.view(-1, demb.shape[-1])) or a loop with +=."),
    Misconception(
        "dC_averaged", "C", "dC averages repeated indices instead of adding them",
        lambda x: _scatter_dC(x.C, x.Xb, x.demb)
        / torch.bincount(x.Xb.reshape(-1), minlength=x.C.shape[0]).clamp(min=1).to(x.C.dtype)[:, None],
        "dC averages the demb rows of a character used several times in Xb: every use adds its "
        "gradient, so sum them (index_add_, or a loop with +=), without dividing by the count."),
    Misconception(
        "embedding_index_order", "C", "Xb and demb flattened in different orders",
        lambda x: [_scatter_dC(x.C, x.Xb.T, x.demb),
                   _scatter_dC(x.C, x.Xb, x.demb.transpose(0, 1))],
        "dC pairs rows of demb with the wrong characters: flatten Xb and demb in the same order, "
        "Xb.view(-1) with demb.view(-1, n_embd) (Xb.T flattens column by column)."),
]


# Broadcasts of the forward pass: the gradient of the broadcast tensor is a sum over `dim`.
REDUCTIONS = {
    # check: (the product that is summed, the dim, why it is a sum)
    "counts_sum_inv": (lambda x: x.counts * x.dprobs, 1,
                       "counts_sum_inv is broadcast across the columns of counts", "(counts * dprobs)"),
    "logit_maxes": (lambda x: -x.dnorm_logits, 1,
                    "logit_maxes is subtracted from every column of logits", "-dnorm_logits"),
    "b2": (lambda x: x.dlogits, 0, "b2 is added to every row of h @ W2", "dlogits"),
    "bngain": (lambda x: x.bnraw * x.dhpreact, 0, "bngain multiplies every row of bnraw",
               "(bnraw * dhpreact)"),
    "bnbias": (lambda x: x.dhpreact, 0, "bnbias is added to every row", "dhpreact"),
    "bnvar_inv": (lambda x: x.bndiff * x.dbnraw, 0, "bnvar_inv multiplies every row of bndiff",
                  "(bndiff * dbnraw)"),
    "bnmeani": (lambda x: -x.dbndiff, 0, "bnmeani is subtracted from every row of hprebn", "-dbndiff"),
    "b1": (lambda x: x.dhprebn, 0, "b1 is added to every row of embcat @ W1", "dhprebn"),
}


def _reduction_entries() -> list[Misconception]:
    entries = []
    for check, (term, dim, why, expr) in REDUCTIONS.items():
        entries.append(Misconception(
            f"{check}_not_summed", check, "a broadcast that was not summed",
            term,
            f"d{check} was not summed: {why} in the forward pass, so its gradient is the sum over "
            f"dim {dim}: {expr}.sum({dim}, keepdim=True)."))
        other = 1 - dim
        entries.append(Misconception(
            f"{check}_wrong_dim", check, "a sum over the wrong dimension",
            (lambda term, other: lambda x: term(x).sum(other, keepdim=True))(term, other),
            f"d{check} is summed over dim {other}, the wrong dimension: {why}, so sum over dim "
            f"{dim}: {expr}.sum({dim}, keepdim=True)."))
    return entries


CATALOGUE += _reduction_entries()


def register(entry: Misconception) -> None:
    """Add a course's own misconception (tried after the built-in ones)."""
    if any(e.id == entry.id for e in CATALOGUE):
        raise ValueError(f"a misconception {entry.id!r} is already registered")
    if entry.at not in STEPS:
        raise ValueError(f"unknown gradient {entry.at!r}")
    CATALOGUE.append(entry)


# ---------------------------------------------------------------------------
# Generic patterns.

LABELS = {
    "cascade": "wrong because an earlier gradient is wrong",
    "chain": "the incoming gradient is not multiplied in (chain rule)",
    "permuted": "right values in the wrong places",
    "not_finite": "NaN or inf",
    "factor": "off by a constant factor",
    "sign": "wrong sign",
    "zeros": "all zeros",
    "transposed": "transposed",
    "reshaped": "right values in the wrong shape",
    "not_summed": "a broadcast that was not summed",
    "wrong_shape": "wrong shape",
    "other_tensor": "the values of a different tensor",
    "precision": "right only up to float32 precision",
    "close": "close, but not within the tolerance",
    "hardcoded": "right on the lecture's shape only (hard-coded sizes)",
    "trajectory": "the SGD steps use wrong gradients",
    "trajectory_state": "the SGD steps left the autograd path",
    "alias": "two gradients share one tensor (a missing .clone())",
}

LABELS.update({f"slip_{kind}": label for kind, label in nearmiss.LABELS.items()})  # near misses, lines that raised

# Where the minus sign of each step comes from, for the "wrong sign" hint.
SIGN_HINTS = {
    "logprobs": "the loss is minus the mean of the picked log-probs",
    "counts_sum": "the derivative of x**-1 is -x**-2",
    "logit_maxes": "norm_logits = logits - logit_maxes subtracts logit_maxes",
    "logits": "dlogits is (softmax - one_hot) / n, not (one_hot - softmax) / n",
    "bnvar": "the derivative of (x + 1e-5)**-0.5 is -0.5 * (x + 1e-5)**-1.5",
    "bnmeani": "bndiff = hprebn - bnmeani subtracts bnmeani",
}

HARDCODED_SIZES = "use n (or a tensor's .shape) instead of 32, 27, 10, 64 or 3"


def _factor_names(n: int, vocab: int):
    """Constant factors worth naming: (name, value, what it usually means)."""
    mean = "the loss is a mean over the n rows only, not over the vocabulary too"
    names = [
        ("n", n, "a 1/n is missing (a mean over the batch divides by n)"),
        ("1/n", 1 / n, "there is an extra 1/n"),
        ("n/(n-1)", n / (n - 1), "Bessel's correction: the forward pass divides the variance by n-1, not n"),
        ("(n-1)/n", (n - 1) / n, "Bessel's correction: the forward pass divides the variance by n-1, not n"),
        ("n-1", n - 1, "a 1/(n-1) is missing"),
        ("1/(n-1)", 1 / (n - 1), "there is an extra 1/(n-1)"),
    ]
    names += [("1/vocab", 1 / vocab, mean), ("1/(n*vocab)", 1 / (n * vocab), mean),
              ("2", 2.0, "check the 2 of d(x**2)/dx and the -0.5 of d(x**-0.5)/dx"),
              ("1/2", 0.5, "check the 2 of d(x**2)/dx and the -0.5 of d(x**-0.5)/dx")]
    if n != 32:  # last: n/32 = 1/2 when n = 16 says nothing about a hard-coded 32
        names += [("n/32", n / 32, "a hard-coded 32 (the lecture's batch size) where n belongs"),
                  ("32/n", 32 / n, "a hard-coded 32 (the lecture's batch size) where n belongs")]
    return [(name, value, why) for name, value, why in names if abs(value - 1) > 1e-9]


def _shape(shape) -> str:
    return str(tuple(shape)).replace(",)", ")")


def is_lecture_shape(spec: ShapeSpec) -> bool:
    default = ShapeSpec()
    return all(getattr(spec, k) == getattr(default, k) for k in ("n", "block", "n_embd", "n_hidden", "vocab"))


# ---------------------------------------------------------------------------
# Diagnosing one case, and summarising a check.


@dataclass
class Diagnosis:
    kind: str                 # a key of LABELS, or "misconception", "nearmiss", "raised"
    message: str              # for the student, on public cases
    label: str                # generic, for hidden cases
    root: str | None = None   # cascades: the first wrong gradient upstream
    given_upstream: bool = False  # cascades: this step is right, given the student's own upstream answers
    at: str | None = None     # the gradient whose step has the mistake (for the local rule)
    levels: list[str] = field(default_factory=list)  # nudge, local rule, worked expression
    weak: bool = False        # true but says no cause (a shape, "close", an unnamed factor): a confirmed slip wins


# Kinds whose cause is confirmed by reproducing the student's answer: they win a check's summary.
CONFIRMED = ("misconception", "nearmiss", "raised", "alias")


def _lenient(t: torch.Tensor, shape) -> torch.Tensor | None:
    if t.shape == shape:
        return t
    if same_up_to_ones(t.shape, shape):
        return t.reshape(shape)
    return None


class _CaseContext:
    """One case of one exercise: the student's answers next to the truth."""

    def __init__(self, ex: Exercise, case, answers: dict, results: dict, tol: float):
        self.ex, self.case, self.results = ex, case, results
        self.forward = case.inputs
        self.ints = case.ints
        self.n = case.ints["n"]
        self.true = case.gradients  # autograd on the lecture's model ({} for an exercise that does not use it)
        self.refs = case.references[ex.id]
        self.tol = tol
        self.floor = ZERO_FLOOR * case.grad_scale
        self.answers = {k: v for k, v in answers.items() if isinstance(v, torch.Tensor)}
        self._propagated: dict[tuple, dict | None] = {}
        self._one_go = None  # the exercise's slip for this case: None before the search, False if none

    # -- the student's answers --------------------------------------------------------------
    def student(self, name: str) -> torch.Tensor | None:
        """The student's gradient, usable in a formula: floating, finite, the right shape."""
        t = self.answers.get(name)
        if t is None or not t.is_floating_point() or name not in self.true:
            return None
        t = _lenient(t.to(self.true[name].dtype), self.true[name].shape)
        if t is None or not bool(torch.isfinite(t).all()):
            return None
        return t

    def raw(self, name: str) -> torch.Tensor | None:
        """The student's gradient as returned (any shape), for replaying their own next step."""
        t = self.answers.get(name)
        if t is None or not t.is_floating_point() or name not in self.true:
            return None
        t = t.to(self.true[name].dtype)
        if not bool(torch.isfinite(t).all()):
            return None
        fitted = _lenient(t, self.true[name].shape)
        return t if fitted is None else fitted

    def failed(self, name: str) -> bool:
        r = self.results.get(name)
        return r is not None and not r.passed

    # -- comparisons ---------------------------------------------------------------------------
    def tol_for(self, s: torch.Tensor) -> float:
        ref_dtype = next(iter(self.true.values())).dtype
        return self.tol if s.dtype == ref_dtype else max(self.tol, 1e-4)

    def close(self, s: torch.Tensor, w: torch.Tensor, ref: torch.Tensor | None = None) -> bool:
        """Does `s` match `w` (shapes equal up to size-1 dims), on the grader's scaled tolerance?"""
        if not isinstance(w, torch.Tensor) or not w.is_floating_point():
            return False
        w2 = _lenient(w, s.shape)
        if w2 is None:
            return False
        if not bool(torch.isfinite(w2).all()):
            return False
        diff = float((s.to(torch.float64) - w2.to(torch.float64)).abs().max()) if s.numel() else 0.0
        scale = max(float(w2.abs().max()) if w2.numel() else 0.0,
                    float(ref.abs().max()) if ref is not None and ref.numel() else 0.0, self.floor, 1e-300)
        return diff <= self.tol_for(s) * scale

    # -- misconceptions ------------------------------------------------------------------------
    def wrong_gradients(self, entry: Misconception, check: str, grads: dict) -> list[torch.Tensor]:
        """The gradient(s) of `check` that the wrong formula of `entry` gives, from `grads`."""
        try:
            built = entry.build(Vars(self.forward, grads, self.ints))
        except Exception:  # noqa: BLE001 - an entry that does not fit this case's shapes
            return []
        built = [built] if isinstance(built, torch.Tensor) else list(built)
        if check == entry.at:
            return built
        out = []
        for i, value in enumerate(built):  # only from the true gradients: one-go exercises have no others
            key = (entry.id, i)
            if key not in self._propagated:
                try:
                    self._propagated[key] = propagate(self.forward, grads, self.ints, entry.at, value)
                except Exception:  # noqa: BLE001
                    self._propagated[key] = None
            if self._propagated[key] is not None:
                out.append(self._propagated[key][check])
        return out

    def misconception(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        ref = self.refs[check]
        entries = [e for e in CATALOGUE if e.applies(self.ex.id, check)]
        # the mistake made at this very gradient first, then the nearest upstream ones
        entries.sort(key=lambda e: (e.at != check, -ATOMIC.index(e.at)))
        mixed = right = None
        if self.ex.id == "atomic":  # the student's own answers for every other gradient
            mixed = dict(self.true)
            mixed.update({k: v for k in self.true if k != check and (v := self.student(k)) is not None})
            right = self.local_rule(check, mixed)
        for entry in entries:
            for wrong in self.wrong_gradients(entry, check, self.true):
                if self.close(s, wrong, ref) and not self.close(ref.to(s.dtype), wrong, ref):
                    return Diagnosis("misconception", entry.hint(check), entry.title, at=entry.at)
            if mixed is not None and check == entry.at:
                # the same local mistake, made on the student's own upstream answers
                for wrong in self.wrong_gradients(entry, check, mixed):
                    if self.close(s, wrong, ref) and (right is None or not self.close(right, wrong, ref)):
                        return Diagnosis("misconception", entry.hint(check), entry.title, at=entry.at)
        return None

    # -- near misses: one slip in the worked code of a step (grader.feedback.nearmiss) -----------------
    def nearmiss(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        try:
            with warnings.catch_warnings():  # torch's warnings about a slip are not the student's
                warnings.simplefilter("ignore")
                return self._nearmiss(check, s)
        except Exception:  # noqa: BLE001 - a search that fails must not hide the generic patterns
            return None

    def _nearmiss(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        ref = self.refs[check]
        if self.ex.id == "atomic":
            if check not in nearmiss.RULES:
                return None
            grads = dict(self.true)
            grads.update({k: v for k in self.true if k != check and (v := self.student(k)) is not None})
            values = {**self.forward, **{f"d{k}": v for k, v in grads.items() if k != check}, **self.ints}
            right = self.local_rule(check, grads)
            for slip in nearmiss.step_slips(check, values):
                wrong = slip.values.get(f"d{check}")
                if isinstance(wrong, torch.Tensor) and wrong.is_floating_point() and self.close(s, wrong, ref) \
                        and (right is None or not self.close(right, wrong, ref)):
                    return self._slip(slip, check)
            return None
        slip = self.one_go_slip()
        return self._slip(slip, check) if slip is not None else None

    def one_go_slip(self) -> "nearmiss.Slip | None":
        """The one slip of the exercise's worked code that gives every answer of this case (searched once)."""
        if self._one_go is not None:
            return self._one_go or None
        self._one_go = False
        if self.ex.id not in nearmiss.ONE_GO:
            return None
        mine = {c: t for c in self.ex.gradient_checks if (t := self.raw(c)) is not None}
        wrong = [c for c in mine if self.failed(c)]
        if not wrong:
            return None
        values = nearmiss.one_go_values(self.ex.id, self.forward, self.ints, self.ex.tensor_args)
        # (a gradient that is zero whatever the slip, like db1, says nothing about where it is)
        right = {f"d{c}" for c in mine if not self.failed(c) and float(self.refs[c].abs().max()) > self.floor}
        for slip in nearmiss.slips(nearmiss.ONE_GO[self.ex.id][1], values, {f"d{c}" for c in wrong}, right):
            got = {c: slip.values.get(f"d{c}") for c in mine}
            if all(isinstance(v, torch.Tensor) and v.is_floating_point() and self.close(mine[c], v, self.refs[c])
                   for c, v in got.items()) and not all(self.close(self.refs[c], got[c], self.refs[c]) for c in wrong):
                self._one_go = slip
                return slip
        return None

    def _slip(self, slip: "nearmiss.Slip", check: str) -> Diagnosis:
        at = slip.at if slip.at in STEPS else check
        message = nearmiss.nudge(slip, check, self.ex.id)
        return Diagnosis("nearmiss", message, nearmiss.LABELS[slip.edit.kind], at=at)

    # -- cascades (exercise 1) -----------------------------------------------------------------
    def local_rule(self, check: str, grads: dict) -> torch.Tensor | None:
        try:
            return STEPS[check].rule(Vars(self.forward, grads, self.ints))
        except Exception:  # noqa: BLE001
            return None

    def root(self, check: str) -> str | None:
        """The first failing gradient, in backward order, that `check` is computed from."""
        return next((a for a in ATOMIC if a in ANCESTORS[check] and self.failed(a)), None)

    def cascade(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        """The step is right given the student's own (wrong) upstream answers: the error is upstream."""
        upstream = STEPS[check].upstream
        failing = [u for u in upstream if self.failed(u)]
        if not failing:
            return None
        root = self.root(check) or failing[0]
        usable = [u for u in upstream if self.raw(u) is not None]
        for picks in product((False, True), repeat=len(usable)):
            chosen = {u for u, p in zip(usable, picks) if p}
            if not chosen & set(failing):
                continue
            grads = dict(self.true)
            grads.update({u: self.raw(u) for u in chosen})
            expected = self.local_rule(check, grads)
            if expected is not None and self.close(s, expected, self.refs[check]):
                wrong = sorted(chosen & set(failing), key=ATOMIC.index)
                given = " and ".join(f"d{u}" for u in wrong)
                return Diagnosis("cascade", f"First fix d{root}: this step is right, given your {given}.",
                                 LABELS["cascade"], root=root, given_upstream=True)
        return None

    def alias(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        """d`check` came back equal to the student's gradient of a step that reads it: one tensor, two names."""
        ref = self.refs[check]
        for later in ATOMIC[ATOMIC.index(check) + 1:]:
            if check not in STEPS[later].upstream or (mine := self.student(later)) is None:
                continue
            if mine.shape == ref.shape and self.close(s, mine, ref) and not self.close(ref.to(s.dtype), mine, ref):
                return Diagnosis("alias", f"d{check} came back equal to your d{later}: when d{later} starts as "
                                 f"d{check} itself (d{later} = d{check}, no .clone()), the in-place += on d{later} "
                                 f"changes d{check} too. Start d{later} from a copy: d{check}.clone() (or the full "
                                 "product of its rule).", LABELS["alias"], at=later)
        return None

    def chain_rule(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        """The step's local derivative alone: the incoming gradient was never multiplied in."""
        for u in STEPS[check].upstream:
            grads = dict(self.true)
            grads[u] = torch.ones_like(self.true[u])
            local = self.local_rule(check, grads)
            if local is not None and self.close(s, local, self.refs[check]) \
                    and not self.close(self.refs[check].to(s.dtype), local, self.refs[check]):
                return Diagnosis("chain", f"d{check} is only the local derivative of this step: multiply it by "
                                 f"the incoming gradient d{u} (chain rule).", LABELS["chain"])
        return None

    def upstream_too(self, check: str) -> Diagnosis | None:
        """The step and an earlier gradient are both wrong: fix the earlier one first."""
        failing = [u for u in STEPS[check].upstream if self.failed(u)]
        if not failing:
            return None
        root = self.root(check) or failing[0]
        return Diagnosis("cascade", f"d{check} is computed from d{root}, which is wrong: fix d{root} "
                         "first, then check this step again.", LABELS["cascade"], root=root)

    # -- generic patterns ----------------------------------------------------------------------
    def not_finite(self, check: str, s: torch.Tensor | None) -> Diagnosis:
        label = LABELS["not_finite"]
        count = ""
        if s is not None and s.is_floating_point():
            count = f" ({int((~torch.isfinite(s)).sum())} of {s.numel()} entries)"
        if self.ex.id == "atomic":
            first = next((c for c in ATOMIC if (r := self.results.get(c)) is not None
                          and r.status == "not_finite"), check)
            if first != check:
                return Diagnosis("not_finite", f"d{check} has NaN or inf{count}, which first appear in "
                                 f"d{first}, earlier in the backward pass: fix d{first} first.", label,
                                 root=first)
            return Diagnosis("not_finite", f"d{check} has NaN or inf{count}, the first gradient of the "
                             "backward pass that does: look for a division by zero, the log of 0, or a "
                             "negative power of 0 in this step.", label)
        return Diagnosis("not_finite", f"d{check} has NaN or inf{count}: look for a division by zero, "
                         "the log of 0, or exp of a large number (subtract the row max first).", label)

    def generic(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        ref = self.refs[check]
        if s.shape != ref.shape and not same_up_to_ones(s.shape, ref.shape):
            return self.shape(check, s, ref)
        s2 = s.reshape(ref.shape).to(torch.float64)
        r = ref.to(torch.float64)
        rmax = float(r.abs().max()) if r.numel() else 0.0
        if rmax > self.floor:
            if float(s2.abs().max()) == 0.0:
                return Diagnosis("zeros", f"d{check} is all zeros, but the true gradient is not: "
                                 "is it computed at all, or multiplied by something that is zero?",
                                 LABELS["zeros"])
            found = self.factor(check, s2, r)
            if found:
                return found
            if s2.dim() == 2 and s2.shape[0] == s2.shape[1] and self.close(s2.T.contiguous(), r, r):
                return Diagnosis("transposed", f"d{check} is transposed: a gradient has the shape of its "
                                 f"tensor, so check the order of the matrix product.", LABELS["transposed"])
            if self.permuted(s2, r):
                return self.wrong_places(check)
        other = self.other_tensor(check, s)
        if other:
            return other
        return self.precision(check, s, ref)

    def factor(self, check: str, s: torch.Tensor, r: torch.Tensor) -> Diagnosis | None:
        c = float((s * r).sum() / (r * r).sum())
        if not abs(c) > 1e-6 or not self.close(s, c * r, r):  # (a near-zero ratio is no factor: s is ~0)
            return None
        if abs(c + 1) < 1e-6:
            why = SIGN_HINTS.get(check)
            return Diagnosis("sign", f"d{check} has the right size but the wrong sign"
                             + (f": {why}." if why else ": check the minus signs of this step."), LABELS["sign"])
        sign = "the wrong sign and " if c < 0 else ""
        for name, value, why in _factor_names(self.n, self.ints["vocab_size"]):
            if abs(abs(c) / value - 1) < 1e-6:
                return Diagnosis("factor", f"d{check} has {sign}an extra factor {name} (it is {c:.4g} times "
                                 f"the right answer, n = {self.n}): {why}.", LABELS["factor"])
        return Diagnosis("factor", f"d{check} is {c:.4g} times the right answer: the formula is right up to a "
                         "constant factor; look for a missing or extra constant.", LABELS["factor"], weak=True)

    def shape(self, check: str, s: torch.Tensor, ref: torch.Tensor) -> Diagnosis:
        got, want = _shape(s.shape), _shape(ref.shape)
        if s.dim() == 2 and _lenient(s.T, ref.shape) is not None and self.close(_lenient(s.T, ref.shape), ref, ref):
            return Diagnosis("transposed", f"d{check} is transposed: it has shape {got} but {check} has shape "
                             f"{want}; swap the order of the matrix product (e.g. A.T @ B, not B.T @ A).",
                             LABELS["transposed"])
        if s.numel() == ref.numel() and self.close(s.reshape(ref.shape), ref, ref):
            return Diagnosis("reshaped", f"d{check} has the right values in the wrong shape {got}: "
                             f"view it as {check}'s shape, {want} (e.g. .view({check}.shape)).",
                             LABELS["reshaped"])
        if s.numel() == ref.numel() and self.permuted(s.reshape(ref.shape), ref):
            return self.wrong_places(check)
        summed = self.summed_to(s, ref.shape)
        if summed is not None:
            total, dims = summed
            if self.close(total, ref, ref):
                where = ", ".join(str(d) for d in dims)
                return Diagnosis("not_summed", f"d{check} has shape {got} instead of {want}: {check} was "
                                 f"broadcast in the forward pass, so sum its gradient over dim {where} "
                                 "(keepdim=True to keep the shape).", LABELS["not_summed"])
            return Diagnosis("not_summed", f"d{check} has shape {got} instead of {want}: a gradient has the "
                             f"shape of its tensor; {check} was broadcast in the forward pass, so its gradient "
                             "sums over the broadcast dims.", LABELS["not_summed"])
        return Diagnosis("wrong_shape", f"d{check} has shape {got}, but a gradient has the shape of its tensor: "
                         f"{check} is {want}.", LABELS["wrong_shape"], weak=True)

    def permuted(self, s: torch.Tensor, r: torch.Tensor) -> bool:
        """The same values as the truth, in other places."""
        return self.close(s.reshape(-1).sort().values, r.reshape(-1).sort().values.to(s.dtype), r)

    def wrong_places(self, check: str) -> Diagnosis:
        return Diagnosis("permuted", f"d{check} has the right values in the wrong places: check the order of "
                         f"your view/reshape or indexing (a view keeps the row-major order; to undo "
                         f"{check}'s own view, use .view({check}.shape)).", LABELS["permuted"])

    @staticmethod
    def summed_to(s: torch.Tensor, shape) -> tuple[torch.Tensor, list[int]] | None:
        """`s` summed over the dims where `shape` is broadcast, when that makes sense."""
        if s.dim() < len(shape):
            return None
        padded = (1,) * (s.dim() - len(shape)) + tuple(shape)
        dims = [i for i, (a, b) in enumerate(zip(s.shape, padded)) if a != b]
        if not dims or any(padded[i] != 1 for i in dims):
            return None
        return s.sum(dims, keepdim=True).reshape(shape), dims

    def other_tensor(self, check: str, s: torch.Tensor) -> Diagnosis | None:
        ref = self.refs[check]
        for name in ATOMIC:
            other = self.true[name]
            if name == check or float(other.abs().max()) <= self.floor or self.close(ref.to(other.dtype), other, ref):
                continue
            if _lenient(other, s.shape) is not None and self.close(s, other, other):
                return Diagnosis("other_tensor", f"d{check} has the values of d{name}: check which tensor "
                                 f"this gradient is for, and whether d{name} = d{check} without .clone() "
                                 "changed one of them in place.", LABELS["other_tensor"])
        for name, value in self.forward.items():
            if not value.is_floating_point() or name.startswith(("d", "traj.")) or float(value.abs().max()) == 0:
                continue
            if _lenient(value, s.shape) is not None and self.close(s, value, value):
                return Diagnosis("other_tensor", f"d{check} has the values of the forward tensor {name} "
                                 "itself: it should be the gradient of the loss with respect to "
                                 f"{check}.", LABELS["other_tensor"])
        return None

    def precision(self, check: str, s: torch.Tensor, ref: torch.Tensor) -> Diagnosis | None:
        r = self.results[check]
        rel = r.rel_err
        if rel is None or float(ref.abs().max()) <= self.floor:
            return None  # a gradient that is zero in truth: its error is noise, it shows no precision
        low = s.dtype in (torch.float32, torch.float16, torch.bfloat16) and ref.dtype == torch.float64
        rounded = ref.dtype == torch.float64 and bool(torch.equal(s.to(torch.float32).to(s.dtype), s))
        if (low and rel < 1e-2) or (rounded and rel < 1e-5):
            return Diagnosis("precision", f"d{check} is right only up to float32 precision (relative error "
                             f"{rel:.0e}): some tensor here is float32; create new tensors with zeros_like(...) "
                             "or dtype=... so the computation stays in the grading precision.",
                             LABELS["precision"], weak=True)
        if rel < 1e-4:
            return Diagnosis("close", f"d{check} is very close (relative error {rel:.0e}) but outside the "
                             f"tolerance ({self.tol:.0e}): a tiny term is missing or wrong, such as the 1e-5 "
                             "of batch norm.", LABELS["close"], weak=True)
        return None

    # -- one check --------------------------------------------------------------------------
    def diagnose(self, check: str) -> Diagnosis | None:
        r = self.results[check]
        if r.passed:
            return None
        if check == TRAJECTORY:
            failing = [c for c in self.ex.gradient_checks if self.failed(c)]
            first = min(failing, key=ATOMIC.index) if failing else None  # in backward order
            if first:
                return Diagnosis("trajectory", f"The SGD steps use your gradients: fix d{first} first.",
                                 LABELS["trajectory"], root=first)
            if r.status in ("wrong_values", "not_finite"):
                return Diagnosis("trajectory_state", "Your gradients are right on the grading batch, but the "
                                 "SGD steps with them left the autograd path: does backward_fast modify its "
                                 "inputs in place or keep state between calls?", LABELS["trajectory_state"])
            return None
        s = self.answers.get(check)
        if r.status == "not_finite":
            return self.not_finite(check, s)
        if r.status not in ("wrong_values", "wrong_shape"):
            return None
        if s is None or not s.is_floating_point():
            if r.status == "wrong_shape":
                want = _shape(self.refs[check].shape)
                return Diagnosis("wrong_shape", f"d{check} has the wrong shape: a gradient has the shape of "
                                 f"its tensor, {want}.", LABELS["wrong_shape"])
            return None
        atomic = self.ex.id == "atomic"
        found = ((self.cascade(check, s) if atomic else None)
                 or self.misconception(check, s)
                 or (self.alias(check, s) if atomic else None)
                 or (self.chain_rule(check, s) if atomic else None))
        if found:
            return found
        if atomic and any(self.failed(u) for u in STEPS[check].upstream):
            return self.nearmiss(check, s) or self.upstream_too(check)
        # a named pattern (sign, factor n, transposed, ...) first; a slip of the rule before a vague one
        found = self.generic(check, s)
        if found is not None and not found.weak:
            return found
        return self.nearmiss(check, s) or found


class Diagnoser:
    """Hints for one exercise: `case()` for each case as it is scored, then `summary()` per check."""

    def __init__(self, exercise: Exercise, cases: list, tolerance: float):
        self.ex = exercise
        self.cases = cases
        self.tol = tolerance
        self.found: dict[tuple[str, str], Diagnosis | None] = {}
        self.levels: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}  # public case -> the last line of the traceback, when it raised

    def _levels(self, found: Diagnosis, check: str) -> list[str]:
        if found.levels:
            return found.levels
        if found.kind in ("cascade", "trajectory", "trajectory_state", "not_finite"):
            return [found.message]  # the hint points elsewhere: the rule to learn is that gradient's
        return hint_levels(found.message, self.ex.id, found.at or check)

    def _set(self, case, check: str, result, found: Diagnosis | None) -> None:
        self.found[(case.spec.name, check)] = found
        if found is None:
            return
        if case.spec.hidden:
            result.hint = f"likely cause: {found.label}"
            result.hint_levels = [result.hint]
        else:
            found.levels = self._levels(found, check)
            result.hint, result.hint_levels = found.message, list(found.levels)

    def case(self, case, answers: dict, results: dict) -> None:
        """Set the hint of every failing result of `case` (a generic label on hidden cases)."""
        ctx = _CaseContext(self.ex, case, answers, results, self.tol)
        for check in self.ex.checks:
            if check not in results:
                continue
            try:
                found = ctx.diagnose(check)
            except Exception:  # noqa: BLE001 - a hint is a bonus; never let it break scoring
                found = None
            self._set(case, check, results[check], found)

    def error(self, case, traceback: str, results: dict) -> None:
        """The function raised on `case`: name the failing operation of its line, and its repair when confirmed."""
        if not case.spec.hidden and traceback:
            self.errors[case.spec.name] = traceback.strip().splitlines()[-1]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = self.raised(case, traceback)
        except Exception:  # noqa: BLE001 - a hint is a bonus
            found = None
        for check, result in results.items():
            self._set(case, check, result, found)

    def raised(self, case, traceback: str) -> Diagnosis | None:
        if case.spec.hidden or not traceback:
            return None
        true = case.gradients
        if self.ex.id == "atomic":
            values = {**case.inputs, **{f"d{k}": v for k, v in true.items()}, **case.ints}
            refs = [nearmiss.RULES[k][2] for k in ATOMIC]
        elif self.ex.id in nearmiss.ONE_GO:
            code = nearmiss.ONE_GO[self.ex.id][1]
            base = nearmiss.one_go_values(self.ex.id, case.inputs, case.ints, self.ex.tensor_args)
            try:
                values = {k: v for k, v in nearmiss.run(code, base).items() if isinstance(v, (torch.Tensor, int))}
            except Exception:  # noqa: BLE001
                values = base
            refs = [code]
        else:
            return None
        r = nearmiss.diagnose_raised(traceback, refs, values, true)
        if r is None:
            return None
        message = nearmiss.raised_message(r, self.ex.function)
        if message is None:
            return None
        at = r.at if r.at in STEPS else None
        return Diagnosis("raised", message, nearmiss.LABELS["raised"], root=at, at=at)

    def summary(self, check: str, results: list) -> str | None:
        """One hint for the check, from its cases' results; hidden cases add only their labels."""
        by_name = {c.spec.name: c for c in self.cases}
        pairs = [(by_name[r.case], r) for r in results if r.case in by_name]
        public = [(c, r) for c, r in pairs if not c.spec.hidden]
        hidden = [(c, r) for c, r in pairs if c.spec.hidden]
        failing = [(c, r, self.found.get((c.spec.name, check))) for c, r in public if not r.passed]
        found = [d for _, _, d in failing if d is not None]

        if found:
            # the kind of mistake seen in most cases (one case alone can match by coincidence, e.g. n=2)
            tally = Counter((d.kind, d.label) for d in found)
            best = max(tally, key=lambda k: (tally[k], -next(i for i, d in enumerate(found)
                                                              if (d.kind, d.label) == k)))
            first = next(d for d in found if (d.kind, d.label) == best)
            if check == TRAJECTORY or first.kind in CONFIRMED:
                self.levels[check] = first.levels
                return first.message
            if len(found) == len(failing) and all(d.kind == "cascade" for d in found):
                root = min((d.root for d in found), key=ATOMIC.index)
                chosen = next(d for d in found if d.root == root)
                self.levels[check] = chosen.levels
                return chosen.message
        hard = self.hardcoded(check, public) if check != TRAJECTORY else None
        if hard:
            return hard
        if found:
            self.levels[check] = first.levels
            return first.message
        if failing:
            return None
        bad = [(c, r) for c, r in hidden if not r.passed]
        if bad:
            labels = []
            for c, _ in bad:
                d = self.found.get((c.spec.name, check))
                if d is not None and d.label not in labels:
                    labels.append(d.label)
            kind = f" (likely cause: {'; '.join(labels)})" if labels else ""
            return (f"Passes every public case but not {len(bad)} of the {len(hidden)} hidden ones{kind}: "
                    "make sure nothing depends on the sizes or the values of the public cases.")
        return None

    def levels_for(self, check: str, hint: str | None) -> list[str]:
        """The escalating hints behind a check's summary hint (just the hint when it has no levels)."""
        if not hint:
            return []
        found = self.levels.get(check)
        return list(found) if found and found[0] == hint else [hint]

    def lecture_size_in_error(self, case) -> bool:
        """The case's error names a size of the lecture's shape (32, 27, 10, 64, 30) that this case does not have."""
        spec = case.spec
        own = {spec.n, spec.block, spec.n_embd, spec.n_hidden, spec.vocab, spec.block * spec.n_embd}
        found = {int(x) for x in re.findall(r"\b\d+\b", self.errors.get(spec.name, ""))}
        return bool(found & ({32, 27, 10, 64, 30} - own))

    def hardcoded(self, check: str, public: list) -> str | None:
        """Right on every public case of the lecture's shape, wrong or crashing only on other shapes."""
        lecture = [r for c, r in public if is_lecture_shape(c.spec)]
        failing = [r for c, r in public if not is_lecture_shape(c.spec) and not r.passed]
        if not lecture or not failing or not all(r.passed for r in lecture):
            return None
        explained = {d.kind for c, r in public if not r.passed and (d := self.found.get((c.spec.name, check)))}
        if explained & {"cascade", "not_finite", *CONFIRMED}:
            return None  # the failures have a confirmed cause of their own
        crash = all(r.status in ("error", "crashed", "timeout", "missing") for r in failing)
        if crash and not any(self.lecture_size_in_error(c) for c, r in public if not r.passed):
            return None  # a crash on other shapes only is a hard-coded size when its error shows one
        what = "crashes on" if crash else "is wrong on"
        return (f"d{check} is right on the lecture's shape (n=32, block=3, n_embd=10, n_hidden=64, vocab=27) "
                f"but {what} other shapes: a size is hard-coded; {HARDCODED_SIZES}.")
