"""Attack: unbounded recursion."""


def cross_entropy_backward(logits, Yb):
    return cross_entropy_backward(logits, Yb)
