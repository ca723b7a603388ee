"""Attack: write, append to and delete the grader's files, its config, the solutions and the report folder."""
import os

import grader

TARGETS = __TARGETS__ + [grader.__file__, os.path.join(os.path.dirname(grader.__file__), "scoring.py")]


def backward_atomic(**fwd):
    for path in TARGETS:
        for action in (lambda p: open(p, "a").write("\n# vandalised\n"),
                       lambda p: open(p, "w").write("vandalised"),
                       lambda p: os.unlink(p),
                       lambda p: open(os.path.join(p, "planted.txt"), "w").write("planted")):
            try:
                action(path)
            except OSError:
                pass
    raise RuntimeError("nothing to return")
