"""Attack: a non-daemon thread that spins forever after the function returns."""
import threading


def _spin():
    while True:
        pass


def embedding_backward(demb, Xb, vocab_size):
    threading.Thread(target=_spin).start()
    return None
