"""Attack: leave at import time, successfully."""
import sys

sys.exit(0)


def backward_atomic(**fwd):
    return {}
