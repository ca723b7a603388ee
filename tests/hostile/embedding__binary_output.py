"""Attack: undecodable bytes and control characters on stdout."""
import os


def embedding_backward(demb, Xb, vocab_size):
    os.write(1, b"\xff\xfe\x00\x1b[2J\x1b]0;pwned\x07" * 100)
    os.write(2, bytes(range(256)) * 10)
    return None
