"""The fork server's warm-up plan, made on the grading side from the course's exercise specs.

A fork server (grader.sandbox.inside.forkserver) runs every exercise once on a tiny synthetic case
before it serves, so each session starts warm. The server knows no exercise: this writes what it
needs (the plan entries, the stand-in inputs, the shapes a stand-in returns) into the slot's inputs
folder. An exercise whose case cannot be built is left out, with a warning, not silently.
"""

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

PLAN = "warm-up.json"
INPUTS = "warm-up.safetensors"


def write_warm_up(folder: Path, config, built: tuple[bytes, dict] | None = None) -> Path:
    """Write the warm-up plan and inputs into `folder` (the server's inputs); the plan's path. `built`: what
    `build_warm_up` made (once for every slot of a batch)."""
    data, plan = built or build_warm_up(config)
    (folder / INPUTS).write_bytes(data)
    (folder / PLAN).write_text(json.dumps({**plan, "inputs": str(folder)}))
    return folder / PLAN


def build_warm_up(config) -> tuple[bytes, dict]:
    """(the stand-in inputs as safetensors, the plan but for its folder) of the course's exercises."""
    from safetensors.torch import save

    from grader.config import CaseSpec
    from grader.course.cases import build_case

    spec = CaseSpec(name="warm-up", seed=0, n=4, block=2, n_embd=3, n_hidden=4, vocab=5)
    inputs, entries, ints = {}, [], {}
    for ex in config.exercise_specs():
        try:
            case = build_case(spec, config.dtype, config.train, [ex])
        except Exception as err:  # noqa: BLE001 - the course's build code: say so, grade cold
            log.warning("exercise %s cannot warm up the fork server: %s: %s", ex.id, type(err).__name__, err)
            continue
        for name, tensor in case.inputs.items():
            inputs.setdefault(name, tensor)
        ints = case.ints
        refs = case.references[ex.id]
        entries.append({**ex.plan(config), "answers": {k: list(refs[k].shape) for k in ex.gradient_checks}})
    plan = {"file": INPUTS, "ints": ints, "exercises": entries, "memory_mb": config.limits.memory_mb,
            "file_size_mb": config.limits.file_size_mb, "sgd": config.train.model_dump()}
    return save(inputs), plan
