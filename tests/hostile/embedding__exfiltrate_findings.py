"""Attack: pack the inputs (hidden cases' too) into what comes back besides the answers.

It reports integrity findings whose line number, file name and message carry the values, forges result
frames whose notes carry them, and triggers a real attempt so the exercise has a true finding too.
Then it answers correctly, so that it reaches the hidden phase.
"""
import os

import torch

from grader.sandbox.inside import channel, guard


def _pack(Xb):
    digits = "".join(f"{v:02d}" for v in Xb.reshape(-1).tolist())
    return "9" + digits  # a leading 9 keeps the leading zeros


def embedding_backward(demb, Xb, vocab_size):
    secret = _pack(Xb)
    for fd in range(3, 40):
        try:
            channel.send(fd, {"type": "integrity", "pattern": "LEAKP" + secret, "file": f"LEAKF{secret}.py",
                              "line": int(secret), "message": "LEAKM" + secret})
            channel.send(fd, {"type": "result", "case": "x", "notes": {"C": {"status": "LEAKS" + secret}}})
        except OSError:
            pass
    if guard.report is not None:
        guard.report({"pattern": ".backward()", "file": f"LEAKF{secret}.py", "line": int(secret),
                      "message": guard.message(".backward()") + " LEAKM" + secret})
    try:
        torch.ops.aten.embedding_dense_backward(demb.reshape(-1, demb.shape[-1]), Xb.reshape(-1), vocab_size, -1,
                                                False)
    except RuntimeError:
        pass
    os.environ.get("x")
    dC = torch.zeros(vocab_size, demb.shape[2], dtype=demb.dtype)
    dC.index_add_(0, Xb.reshape(-1), demb.reshape(-1, demb.shape[2]))
    return dC
