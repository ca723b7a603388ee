"""Attack: flood stdout (and stderr) with hundreds of megabytes."""
import sys


def backward_atomic(**fwd):
    line = "flood " * 100_000 + "\n"
    for _ in range(300):
        sys.stdout.write(line)
        sys.stderr.write(line[:1000])
    return None
