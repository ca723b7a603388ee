"""Seeded cases and their autograd references, built in the grading process.

A case is one seeded draw per exercise: each exercise's `build(case, generator)` makes its own
inputs and autograd references, with a generator seeded from (case seed, exercise id), so adding
an exercise never changes another's cases. The lecture's exercises grade the lecture's forward
pass on the case's batch (`BuildCase.lecture`, seeded from the case alone and made once), as the
lecture's notebook does: its exercises 1 to 4 start from the same forward pass.

A case's `inputs` are what the worker may see (plain tensors, no autograd history); its
`references` are autograd's answers, which never leave this process.
"""

import hashlib
import traceback
from dataclasses import dataclass
from functools import cached_property

import torch

from grader.course.case_specs import Case, CaseSpec, TrainConfig
from grader.errors import ConfigError
from grader.course import mlp

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def exercise_seed(seed: int, ex_id: str) -> int:
    """The seed of one exercise's draws on a case: independent of every other exercise."""
    digest = hashlib.sha256(f"{seed}\0{ex_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63


def draw_batch(g, spec: CaseSpec):
    """Xb and Yb for one batch of the lecture's model, honouring the case's edge-case flags."""
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


def autograd(params, Xb, Yb, targets="random"):
    """The lecture's forward pass with every intermediate's gradient retained; (forward, Yb)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    if targets == "argmax":
        with torch.no_grad():
            Yb = mlp.forward(leaves, Xb, Yb)["logits"].argmax(1)
    fwd = mlp.forward(leaves, Xb, Yb)
    for name in mlp.ATOMIC:
        if name not in leaves:
            fwd[name].retain_grad()
    fwd["loss"].backward()
    return fwd, Yb


def sgd_trajectory(params, batches, lr: float) -> dict[str, torch.Tensor]:
    """Parameters after each SGD step on `batches`, computed with autograd: `step{i}.{name}`."""
    params = {k: v.clone() for k, v in params.items()}
    out = {}
    for step, (Xb, Yb) in enumerate(batches):
        fwd, _ = autograd(params, Xb, Yb)
        with torch.no_grad():
            for k in mlp.PARAMS:
                params[k] = params[k] - lr * fwd[k].grad
                out[f"step{step}.{k}"] = params[k].clone()
    return out


@dataclass
class LectureBatch:
    """The lecture's model on one case: parameters, the forward pass (detached) and autograd's gradients."""

    params: dict[str, torch.Tensor]
    forward: dict[str, torch.Tensor]           # every name of mlp.FORWARD_ARGS
    grads: dict[str, torch.Tensor]             # every name of mlp.ATOMIC


class BuildCase:
    """What an exercise's `build(case, generator)` gets: the case's spec, dtype and policy, and the lecture's model."""

    def __init__(self, spec: CaseSpec, dtype: str, train: TrainConfig):
        self.spec = spec
        self.dtype = DTYPES[dtype]
        self.train = train

    @cached_property
    def lecture(self) -> LectureBatch:
        """The lecture's forward pass on this case's batch, seeded from the case alone (shared, made once)."""
        g = torch.Generator().manual_seed(self.spec.seed)
        s = self.spec
        params = mlp.init_params(g, vocab=s.vocab, block=s.block, n_embd=s.n_embd, n_hidden=s.n_hidden,
                                 dtype=self.dtype)
        Xb, Yb = draw_batch(g, s)
        fwd, Yb = autograd(params, Xb, Yb, s.targets)
        forward = {name: fwd[name].detach().clone() for name in mlp.FORWARD_ARGS}
        forward["Yb"] = Yb
        grads = {name: fwd[name].grad.detach().clone() for name in mlp.ATOMIC}
        return LectureBatch(params=params, forward=forward, grads=grads)


def build_case(spec: CaseSpec, dtype: str, train: TrainConfig, exercises) -> Case:
    """One case of every exercise in `exercises` (Exercise specs), each from its own generator."""
    context = BuildCase(spec, dtype, train)
    inputs: dict[str, torch.Tensor] = {}
    owner: dict[str, str] = {}
    references, private = {}, set()
    for ex in exercises:
        where = f"exercise {ex.id}" + (f" ({ex.origin})" if ex.origin else "")
        g = torch.Generator().manual_seed(exercise_seed(spec.seed, ex.id))
        try:
            made = ex.builder()(context, g)
        except Exception as err:  # noqa: BLE001 - the course's own code: say where, as a config error
            line = next((f.lineno for f in reversed(traceback.extract_tb(err.__traceback__))
                         if ex.origin and f.filename == ex.origin), None)
            at = f" line {line}" if line else ""
            raise ConfigError(f"{where}{at}: its build failed on case {spec.name}: {type(err).__name__}: {err}") \
                from None
        if not (isinstance(made, tuple) and len(made) == 2 and all(isinstance(d, dict) for d in made)):
            raise ConfigError(f"{where}: build must return (inputs, references), two dicts")
        ex_inputs, refs = made
        missing = sorted(set(ex.tensor_args) - set(ex_inputs))
        if missing:
            raise ConfigError(f"{where}: build made no input {', '.join(missing)}")
        absent = sorted(set(ex.check_names) - set(refs))
        if absent:
            raise ConfigError(f"{where}: build made no reference for {', '.join(absent)}")
        bad = sorted(k for k, v in ex_inputs.items() if not isinstance(v, torch.Tensor))
        if bad:
            raise ConfigError(f"{where}: build's inputs must be tensors ({', '.join(bad)} are not)")
        for name, tensor in ex_inputs.items():
            if name in inputs and inputs[name] is not tensor and not torch.equal(inputs[name], tensor):
                raise ConfigError(f"{where}: its input {name!r} differs from exercise {owner[name]}'s "
                                  "(a case holds one tensor per name: rename one)")
            inputs.setdefault(name, tensor)
            owner.setdefault(name, ex.id)
        references[ex.id] = refs
        private |= set(ex.private_inputs)
    lecture = context.__dict__.get("lecture")  # only if an exercise used the lecture's model
    if lecture is not None:
        scale = float(lecture.grads["logits"].abs().max())
    else:
        scale = max((float(r.abs().max()) for refs in references.values() for r in refs.values()
                     if isinstance(r, torch.Tensor)), default=1.0)
    return Case(spec=spec, inputs={k: v.contiguous() for k, v in inputs.items()},
                ints={"n": spec.n, "vocab_size": spec.vocab}, references=references, grad_scale=scale,
                gradients=lecture.grads if lecture is not None else {}, private=frozenset(private))
