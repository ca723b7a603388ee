"""The lecture's catalogue of known misconceptions: course data, one entry per classic mistake.

Each entry sits at the gradient of the lecture's backward pass where the mistake
is made (grader.course.misconception says what an entry is). The exercises of
the lecture pick theirs with `along` in their definitions: the entries made on
their backward pass's path, in the catalogue's order (the order they are
tried in), minus those that only show in the other form of the exercise
(step by step in exercise 1, or a closed form in one go).
"""

from __future__ import annotations

from grader.course.misconception import Misconception
from grader.course.steps import F, Vars, one_hot, scatter_dC, torch  # (torch on first use)


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


_CLASSIC = [
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
        "dlogits = (softmax(logits) - one_hot(Yb)) / n."),
    Misconception(
        "dlogits_missing_target", "logits", "the -1 at the targets is missing from dlogits",
        lambda x: x.probs / x.n,
        "dlogits is softmax(logits)/n without the -1 at each row's target: subtract 1 at "
        "[range(n), Yb] before dividing by n.",
        "d{check} comes from a dlogits without the -1 at the targets: "
        "dlogits = (softmax(logits) - one_hot(Yb)) / n."),
    Misconception(
        "dlogits_column_index", "logits", "targets indexed with [:, Yb] instead of [range(n), Yb]",
        lambda x: _column_minus_one(x.probs, x.Yb) / x.n,
        "dlogits[:, Yb] -= 1 subtracts 1 in whole columns; row i only has its own target: "
        "use dlogits[range(n), Yb] -= 1.",
        "d{check} comes from a dlogits with [:, Yb] instead of [range(n), Yb]: "
        "subtract 1 only at each row's own target."),
    Misconception(
        "softmax_wrong_dim", "logits", "softmax over the wrong dimension",
        lambda x: [(F.softmax(x.logits, 0) - one_hot(x.Yb, x.logits)) / x.n,
                   (x.counts / x.counts.sum(0, keepdim=True) - one_hot(x.Yb, x.logits)) / x.n],
        "the softmax in dlogits must normalise each row (dim 1, over the vocabulary), not each "
        "column (dim 0, over the batch).",
        "d{check} comes from a softmax over dim 0 (the batch): normalise each row of the logits "
        "(dim 1) instead."),
    Misconception(
        "dcounts_missing_branch", "counts", "dcounts misses one of its two branches",
        lambda x: [x.counts_sum_inv * x.dprobs, x.dcounts_sum.expand_as(x.counts)],
        "dcounts misses a branch: counts is used twice (in probs = counts * counts_sum_inv and in "
        "counts_sum = counts.sum(1)), so dcounts = counts_sum_inv * dprobs + dcounts_sum."),
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
        "dbnvar = -0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv."),
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
        "divides by n-1)."),
    Misconception(
        "square_derivative", "bndiff", "the 2 of d(x**2)/dx is missing",
        lambda x: x.bnvar_inv * x.dbnraw + x.bndiff * x.dbndiff2,
        "the branch through bndiff2 = bndiff**2 needs the derivative 2 * bndiff: "
        "dbndiff = bnvar_inv * dbnraw + 2 * bndiff * dbndiff2."),
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
        "so dhprebn += ... also changed dbndiff. Write dhprebn = dbndiff.clone()."),
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
        "dhprebn = dbndiff + dbnmeani / n."),
    Misconception(
        "closed_form_wrong_dim", "hprebn", "a batch-norm sum over the wrong dimension",
        lambda x: [_closed_form(x, r, d1, d2) for r in ("sum", "mean")
                   for d1, d2 in ((1, 0), (0, 1), (1, 1))],
        "the sums in batch norm's closed form run over the batch, dim 0 (dhpreact.sum(0), "
        "(dhpreact * bnraw).sum(0)), not over dim 1.",
        "d{check} comes from batch norm's closed form with a sum over dim 1: both sums run over "
        "the batch, dim 0."),
    # --- the embedding ---------------------------------------------------------------------
    Misconception(
        "dC_no_accumulate", "C", "dC does not accumulate repeated indices",
        lambda x: [_last_write_dC(x, "last"), _last_write_dC(x, "first")],
        "dC keeps only one contribution per row: a character used several times in Xb must add up "
        "all its demb rows, and dC[Xb] += demb (or =) keeps only one. Use "
        "dC.index_add_(0, Xb.view(-1), demb.view(-1, demb.shape[-1])) or a loop with +=."),
    Misconception(
        "dC_averaged", "C", "dC averages repeated indices instead of adding them",
        lambda x: scatter_dC(x.C, x.Xb, x.demb)
        / torch.bincount(x.Xb.reshape(-1), minlength=x.C.shape[0]).clamp(min=1).to(x.C.dtype)[:, None],
        "dC averages the demb rows of a character used several times in Xb: every use adds its "
        "gradient, so sum them (index_add_, or a loop with +=), without dividing by the count."),
    Misconception(
        "embedding_index_order", "C", "Xb and demb flattened in different orders",
        lambda x: [scatter_dC(x.C, x.Xb.T, x.demb),
                   scatter_dC(x.C, x.Xb, x.demb.transpose(0, 1))],
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


# Every entry, in the order they are tried (a mistake made at the same gradient: the first that matches).
CATALOGUE: tuple[Misconception, ...] = (*_CLASSIC, *_reduction_entries())


# Mistakes that show only where each step is its own check (exercise 1): a closed form has no such line,
# or (dlogprobs' 1/n) its wrong gradient is the one of a closed-form entry whose message fits better there.
STEP_BY_STEP_ONLY = frozenset({"missing_eps", "square_derivative", "aliasing", "mean_missing_1_over_n",
                               "dlogprobs_missing_1_over_n"})
# Mistakes of a closed form written in one go, which exercise 1's steps cannot make.
ONE_GO_ONLY = frozenset({"dlogits_missing_1_over_n", "dlogits_missing_target", "dlogits_column_index",
                         "softmax_wrong_dim", "bessel_inverted", "closed_form_wrong_dim"})


def along(path, *, one_go: bool, leave_out=()) -> tuple[Misconception, ...]:
    """The entries made at a gradient of `path`, for an exercise written step by step or in one go."""
    skip = (STEP_BY_STEP_ONLY if one_go else ONE_GO_ONLY) | set(leave_out)
    unknown = set(leave_out) - {e.id for e in CATALOGUE}
    if unknown:
        raise ValueError(f"no misconception {', '.join(sorted(unknown))} in the lecture's catalogue")
    return tuple(e for e in CATALOGUE if e.at in path and e.id not in skip)
