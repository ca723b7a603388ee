"""Attack: SIGKILL oneself halfway through."""
import os
import signal


def cross_entropy_backward(logits, Yb):
    os.kill(os.getpid(), signal.SIGKILL)
