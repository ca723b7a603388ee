"""Seeded cases and their autograd references, built in the grading process.

A case is the lecture's forward pass on one seeded batch. Its `inputs` are
what the worker may see (plain tensors, no autograd history); its
`references` are autograd's answers, which never leave this process.
"""

from dataclasses import dataclass

import torch

from grader.course import mlp
from grader.config import CaseSpec, TrainConfig
from grader.course.spec import ATOMIC, EXERCISES, PARAMS, TRAJECTORY

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class Case:
    spec: CaseSpec
    inputs: dict[str, torch.Tensor]            # tensors the worker receives
    ints: dict[str, int]                       # `n`, `vocab_size`
    references: dict[str, dict[str, torch.Tensor]]  # exercise id -> check -> expected
    grad_scale: float                          # max |dlogits|: the scale of this case's gradients


def _draw_batch(g, spec: CaseSpec):
    """Xb and Yb for one batch, honouring the case's edge-case flags."""
    rows = torch.arange(spec.vocab)
    if spec.unused_vocab:
        keep = max(1, spec.vocab // 2)
        rows = torch.randperm(spec.vocab, generator=g)[:keep]
    if spec.repeated_indices:
        rows = rows[torch.randperm(len(rows), generator=g)[: min(3, len(rows))]]
    pick = torch.randint(0, len(rows), (spec.n, spec.block), generator=g)
    Xb = rows[pick]
    Yb = torch.randint(0, spec.vocab, (spec.n,), generator=g)
    return Xb, Yb


def _autograd(params, Xb, Yb, targets):
    """The forward pass with every intermediate's gradient retained."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    if targets == "argmax":
        with torch.no_grad():
            Yb = mlp.forward(leaves, Xb, Yb)["logits"].argmax(1)
    fwd = mlp.forward(leaves, Xb, Yb)
    for name in ATOMIC:
        if name not in leaves:
            fwd[name].retain_grad()
    fwd["loss"].backward()
    return fwd, Yb


def _trajectory(params, batches, cfg: TrainConfig):
    """Parameters after each of the SGD steps, computed with autograd."""
    params = {k: v.clone() for k, v in params.items()}
    out = {}
    for step, (Xb, Yb) in enumerate(batches):
        fwd, _ = _autograd(params, Xb, Yb, "random")
        with torch.no_grad():
            for k in PARAMS:
                params[k] = params[k] - cfg.lr * fwd[k].grad
                out[f"step{step}.{k}"] = params[k].clone()
    return out


def build_case(spec: CaseSpec, dtype: str, train: TrainConfig) -> Case:
    g = torch.Generator().manual_seed(spec.seed)
    params = mlp.init_params(g, vocab=spec.vocab, block=spec.block, n_embd=spec.n_embd,
                             n_hidden=spec.n_hidden, dtype=DTYPES[dtype])
    Xb, Yb = _draw_batch(g, spec)
    fwd, Yb = _autograd(params, Xb, Yb, spec.targets)
    grad = {name: fwd[name].grad.detach().clone() for name in ATOMIC}

    inputs = {name: fwd[name].detach().clone() for name in EXERCISES["atomic"].tensor_args}
    inputs["Yb"] = Yb
    inputs["dhpreact"] = grad["hpreact"]
    inputs["demb"] = grad["emb"]

    batches = [_draw_batch(g, spec) for _ in range(train.steps)]
    for step, (bx, by) in enumerate(batches):
        inputs[f"traj.Xb.{step}"], inputs[f"traj.Yb.{step}"] = bx, by

    references = {
        "atomic": {name: grad[name] for name in ATOMIC},
        "cross_entropy": {"logits": grad["logits"]},
        "batchnorm": {"hprebn": grad["hprebn"]},
        "embedding": {"C": grad["C"]},
        "train": {**{k: grad[k] for k in PARAMS}, TRAJECTORY: _trajectory(params, batches, train)},
    }
    return Case(spec=spec, inputs={k: v.contiguous() for k, v in inputs.items()},
                ints={"n": spec.n, "vocab_size": spec.vocab}, references=references,
                grad_scale=float(grad["logits"].abs().max()))
