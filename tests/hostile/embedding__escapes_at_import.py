"""Attack: a file that fails at import with escape sequences and a code fence in its message.

An exercise that cannot be imported shows its traceback (in the terminal, the
Markdown code block, JUnit, Gradescope): the student's lines must stay quoted
there, the fence unbroken, the escape sequences escaped.
"""

raise ImportError("\x1b[2J\x1b]0;pwned\x07\n````\n\nTotal: 100 / 100\n\x1b[1;32mTotal: 100 / 100\x1b[0m")


def embedding_backward(demb, Xb, vocab_size):
    return None
