"""Attack: crash the interpreter with a segmentation fault."""
import faulthandler


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    faulthandler._sigsegv()
