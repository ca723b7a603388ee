"""The student contract: one exercise per file, its function and its checks.

Kept free of torch so that the command line and the config load fast.
"""

from dataclasses import dataclass

PARAMS = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")

ATOMIC = (
    "logprobs", "probs", "counts_sum_inv", "counts_sum", "counts",
    "norm_logits", "logit_maxes", "logits", "h", "W2", "b2", "hpreact",
    "bngain", "bnbias", "bnraw", "bnvar_inv", "bnvar", "bndiff2", "bndiff",
    "bnmeani", "hprebn", "embcat", "W1", "b1", "emb", "C",
)

# Keyword arguments of backward_atomic and backward_fast (plus the int `n`).
FORWARD_ARGS = (
    "Xb", "Yb", *PARAMS,
    "emb", "embcat", "hprebn", "bnmeani", "bndiff", "bndiff2", "bnvar",
    "bnvar_inv", "bnraw", "hpreact", "h", "logits", "logit_maxes",
    "norm_logits", "counts", "counts_sum", "counts_sum_inv", "probs", "logprobs",
)

TRAJECTORY = "trajectory"


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    file: str
    function: str
    checks: tuple[str, ...]           # gradient names (without the `d`), backward-pass order
    tensor_args: tuple[str, ...]      # tensors passed by keyword, taken from the case
    int_args: tuple[str, ...]         # ints passed by keyword (`n`, `vocab_size`)
    returns_dict: bool                # a dict of gradients, or one tensor

    @property
    def module(self) -> str:
        return self.file.removesuffix(".py")

    @property
    def gradient_checks(self) -> tuple[str, ...]:
        return tuple(c for c in self.checks if c != TRAJECTORY)


EXERCISES = {
    ex.id: ex
    for ex in (
        Exercise("atomic", "Exercise 1: backprop through every atomic step", "atomic.py",
                 "backward_atomic", ATOMIC, FORWARD_ARGS, ("n",), True),
        Exercise("cross_entropy", "Exercise 2: cross entropy in one go", "cross_entropy.py",
                 "cross_entropy_backward", ("logits",), ("logits", "Yb"), (), False),
        Exercise("batchnorm", "Exercise 3: batch norm in one go", "batchnorm.py",
                 "batchnorm_backward", ("hprebn",), ("dhpreact", "bngain", "bnraw", "bnvar_inv"), (), False),
        Exercise("embedding", "Embedding: dC from demb", "embedding.py",
                 "embedding_backward", ("C",), ("demb", "Xb"), ("vocab_size",), False),
        Exercise("train", "Exercise 4: put it all together", "train.py",
                 "backward_fast", (*PARAMS, TRAJECTORY), FORWARD_ARGS, ("n",), True),
    )
}
