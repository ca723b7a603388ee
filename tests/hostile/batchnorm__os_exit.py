"""Attack: end the process from inside the function, with success."""
import os


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    os._exit(0)
