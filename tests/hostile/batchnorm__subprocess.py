"""Attack: a detached process that outlives the call."""
import subprocess


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    subprocess.Popen(["sleep", "1000"], start_new_session=True)
    return dhpreact
