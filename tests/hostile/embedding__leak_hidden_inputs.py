"""Attack: print every input file the worker can find (hidden cases too), and raise with the values."""
import glob
import os
import sys

INPUTS = os.path.dirname(sys.argv[1]) if len(sys.argv) > 1 else "."


def _leak():
    return {os.path.basename(p): open(p, "rb").read()[:4000].hex() for p in glob.glob(os.path.join(INPUTS, "*"))}


print("LEAK at import", sorted(_leak()))


def embedding_backward(demb, Xb, vocab_size):
    print("LEAK", _leak(), Xb.tolist())
    raise RuntimeError("LEAK " + repr(sorted(_leak())) + " " + repr(Xb.tolist()))
