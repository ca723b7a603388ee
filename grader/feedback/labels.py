"""The generic names of the kinds of mistake, shared by the feedback and the outputs.

Torch-free on purpose: the outputs (grader.outputs) read a finished report
and must not pay for torch to know what "likely cause: ..." means. A label is
the only part of a diagnosis shown for hidden cases, so none holds a value or
a shape.
"""

# What a near miss (grader.feedback.nearmiss) names, by the kind of its one edit.
SLIP_LABELS = {
    "binop": "a wrong operator in a local rule",
    "augop": "a wrong operator in a local rule",
    "sign": "a missing minus sign in a local rule",
    "constant": "a wrong constant in a local rule",
    "dim": "a reduction over the wrong dimension",
    "keepdim": "keepdim flipped in a reduction",
    "drop_T": "a missing transpose",
    "drop_term": "a term or factor left out of a local rule",
    "drop_branch": "a branch of a gradient left out",
    "swap_var": "the wrong variable in a local rule",
    "raised": "the function raised an error",
}

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
    **{f"slip_{kind}": label for kind, label in SLIP_LABELS.items()},
}

# Where the minus sign of each step of the lecture's backward pass comes from, for the "wrong sign" hint.
SIGN_HINTS = {
    "logprobs": "the loss is minus the mean of the picked log-probs",
    "counts_sum": "the derivative of x**-1 is -x**-2",
    "logit_maxes": "norm_logits = logits - logit_maxes subtracts logit_maxes",
    "logits": "dlogits is (softmax - one_hot) / n, not (one_hot - softmax) / n",
    "bnvar": "the derivative of (x + 1e-5)**-0.5 is -0.5 * (x + 1e-5)**-1.5",
    "bnmeani": "bndiff = hprebn - bnmeani subtracts bnmeani",
}


class FeedbackWarning(UserWarning):
    """A misconception entry or a pattern broke on a case: the hint is lost, the grade is not.

    The test suite turns it into an error (pyproject's filterwarnings), so a broken entry of a
    course's catalogue fails a test instead of vanishing.
    """
