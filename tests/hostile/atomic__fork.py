"""Attack: a forked child that outlives the call."""
import os
import time


def backward_atomic(**fwd):
    if os.fork() == 0:
        time.sleep(10**6)  # __STRAY_MARKER__
    return {}
