"""Attack: a multiprocessing pool."""
import multiprocessing


def cross_entropy_backward(logits, Yb):
    with multiprocessing.Pool(2) as pool:
        pool.map(abs, [1, 2, 3])
    return logits
