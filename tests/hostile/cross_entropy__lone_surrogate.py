"""Attack: lone surrogates in an exception message, and surrogate and invalid UTF-8 bytes on stdout.

No encoder accepts a lone surrogate: the report (and a batch's gradebook)
used to fail to serialise, with no report at all. The report must be written,
the message shown with the surrogate escaped, every other exercise graded.
"""
import os


def cross_entropy_backward(logits, Yb):
    os.write(1, b"half a pair \xed\xa0\x80, not UTF-8 \xff\xfe\n")
    raise ValueError("broken \ud800 pair \udcff and \udfff")
