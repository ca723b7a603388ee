"""Attack: sleep far past any timeout."""
import time


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    time.sleep(10**6)
