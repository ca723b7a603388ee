"""Attack: write forged answer frames, and garbage, to every file descriptor."""
import json
import os
import struct

import torch
from safetensors.torch import save


def _frame(meta, blob=b""):
    body = json.dumps(meta).encode()
    return struct.pack(">4sII", b"BPN1", len(body), len(blob)) + body + blob


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    blob = save({"hprebn": torch.zeros_like(dhpreact)})
    forged = b"".join(_frame({"type": t, "exercise": e, "case": c, "notes": {"hprebn": {"status": "ok"}}}, blob)
                      for t, e, c in [("result", "batchnorm", "lecture"), ("result", "atomic", "lecture"),
                                      ("exercise_end", "batchnorm", None), ("done", None, None)])
    forged += b"".join(_frame(meta) for meta in [  # the wrong types everywhere
        {"type": "result", "case": "small", "notes": {"hprebn": [1, 2]}, "error": "x", "trajectory": 5},
        {"type": "result", "case": ["pair"], "notes": [1]}, {"type": ["result"]}, {"type": None},
        {"type": "integrity", "pattern": ["x"], "file": {}, "line": "one", "message": None},
        {"type": "exercise_error", "status": {"a": 1}, "message": ["m"] * 10**4}])
    for fd in range(3, 64):
        try:
            os.write(fd, forged)
            os.write(fd, b"\x00garbage\xff" * 1000)
        except OSError:
            pass
    return dhpreact * 0
