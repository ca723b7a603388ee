"""Attack: monkeypatch torch, the standard library and the grader's modules, then return zeros."""
import json
import math

import torch

import grader.scoring.compare
import grader.sandbox.inside.harness

torch.Tensor.__sub__ = lambda a, b: torch.zeros_like(a)
torch.Tensor.__eq__ = lambda a, b: torch.ones_like(a, dtype=torch.bool)
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isfinite = lambda t: torch.ones_like(t, dtype=torch.bool)
torch.zeros_like = lambda t, **k: torch.ones(t.shape)
math.isclose = lambda *a, **k: True
json.dumps = lambda *a, **k: '{"score": 100}'
grader.scoring.compare.compare = lambda *a, **k: None
grader.sandbox.inside.harness.PLAIN_TENSOR = object


def backward_atomic(**fwd):
    return {name[1:]: torch.full(t.shape, 0.0) for name, t in
            (("d" + k, v) for k, v in fwd.items() if hasattr(v, "shape"))}
