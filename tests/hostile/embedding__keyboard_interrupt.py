"""Attack: BaseExceptions that a plain `except Exception` would miss."""


class Escape(BaseException):
    pass


def embedding_backward(demb, Xb, vocab_size):
    raise Escape("not an Exception")
