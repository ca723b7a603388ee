"""Helpers for the feedback tests (no tests here).

`score_file` scores a submission file without a worker process: the test
imports the (trusted, test-fixture) module itself and runs it on the cases
the way the worker does, then hands the answers to the real scoring code.
Only for tests: graded submissions always run in a worker.
`assert_feedback` checks the hints of one exercise result.
"""

import importlib.util
import itertools
import re
from pathlib import Path

import torch
import yaml
from safetensors.torch import save

from grader import mlp
from grader.diagnosis import CATALOGUE, Misconception
from grader.exercises import EXERCISES, FORWARD_ARGS, PARAMS, TRAJECTORY
from grader.runner import ExerciseRun
from grader.scoring import score_exercise

_counter = itertools.count()
FEEDBACK = Path(__file__).resolve().parent / "fixtures" / "feedback"
FEEDBACK_MANIFEST = yaml.safe_load((FEEDBACK / "manifest.yaml").read_text())["variants"]


def feedback_expect(v: dict) -> tuple[dict, str | None]:
    """(check -> catalogue entry or phrase, cascade root) for one entry of fixtures/feedback/manifest.yaml.

    With an `entry`, the hint must be that entry's exact message: on the first expected check in
    exercise 1 (the others are cascades), on every expected check in the one-go exercises.
    """
    entry = next((e for e in CATALOGUE if e.id == v.get("entry")), None)
    one_go = v["replaces"] != "atomic.py"
    expect = {check: entry if entry is not None and (i == 0 or one_go) else phrase
              for i, (check, phrase) in enumerate(v["expect"].items())}
    return expect, v["root"]


class Answers:
    """What the worker sends back for one case: plain tensors and a note per key."""

    def __init__(self, max_numel: int = 0):
        self.tensors: dict[str, torch.Tensor] = {}
        self.notes: dict[str, dict] = {}

    def add(self, key: str, value) -> None:
        if value is None:
            self.notes[key] = {"status": "not_implemented", "message": "not implemented yet (None)"}
        elif type(value) is not torch.Tensor:
            self.notes[key] = {"status": "wrong_type", "message": f"got {type(value).__name__}"}
        else:
            self.tensors[key] = value.detach().clone().contiguous()
            self.notes[key] = {"status": "ok"}

    def blob(self) -> bytes:
        return save(self.tensors) if self.tensors else b""


def load_function(path: Path, ex_id: str):
    spec = importlib.util.spec_from_file_location(f"_feedback_sub_{next(_counter)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, EXERCISES[ex_id].function)


def _trajectory(function, case, config, answers) -> dict:
    params = {k: case.inputs[k].clone() for k in PARAMS}
    for step in range(config.train.steps):
        fwd = mlp.forward(params, case.inputs[f"traj.Xb.{step}"], case.inputs[f"traj.Yb.{step}"])
        grads = function(**{k: fwd[k].clone() for k in FORWARD_ARGS}, n=case.ints["n"])
        for k in PARAMS:
            g = grads.get(k)
            if g is None:
                return {"status": "not_implemented", "message": f"d{k} is None"}
            if g.numel() != params[k].numel():
                return {"status": "failed", "message": f"step {step + 1}: d{k} has the wrong size"}
            params[k] = params[k] - config.train.lr * g.reshape(params[k].shape).to(params[k].dtype)
        for k in PARAMS:
            answers.add(f"step{step}.{k}", params[k])
    return {"status": "ok"}


def run_function(function, ex_id: str, cases, config) -> ExerciseRun:
    ex = EXERCISES[ex_id]
    run = ExerciseRun()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if config.dtype == "float64" else torch.float32)
    try:
        with torch.no_grad():
            for case in cases:
                answers = Answers(16 * max(t.numel() for t in case.inputs.values()) + 4096)
                meta = {"type": "result", "exercise": ex_id, "case": case.spec.name}
                try:
                    kwargs = {k: case.inputs[k].clone() for k in ex.tensor_args}
                    kwargs.update({k: case.ints[k] for k in ex.int_args})
                    result = function(**kwargs)
                    if ex.returns_dict:
                        for key in ex.gradient_checks:
                            if key in result:
                                answers.add(key, result[key])
                    else:
                        answers.add(ex.gradient_checks[0], result)
                    if ex_id == "train":
                        meta["trajectory"] = _trajectory(function, case, config, answers)
                except Exception as err:  # noqa: BLE001
                    meta["error"] = {"message": f"{ex.function} raised {type(err).__name__}",
                                     "traceback": f"{type(err).__name__}: {err}"}
                meta["notes"] = answers.notes
                run.results[case.spec.name] = (meta, answers.blob())
    finally:
        torch.set_default_dtype(previous)
    return run


def score_file(path: Path, ex_id: str, cases, config):
    """The ExerciseResult of one exercise file, scored by the real scoring code."""
    return score_exercise(ex_id, config, cases, run_function(load_function(path, ex_id), ex_id, cases, config))


def score_answers(ex_id: str, cases, config, answers_for):
    """Score answers built by `answers_for(case) -> {check: tensor}` (no student code at all)."""
    ex = EXERCISES[ex_id]
    run = ExerciseRun()
    for case in cases:
        answers = Answers(16 * max(t.numel() for t in case.inputs.values()) + 4096)
        for key, value in answers_for(case).items():
            answers.add(key, value)
        run.results[case.spec.name] = ({"type": "result", "exercise": ex_id, "case": case.spec.name,
                                        "notes": answers.notes}, answers.blob())
    assert all(k in ex.checks for k in answers.notes)
    return score_exercise(ex_id, config, cases, run)


def assert_feedback(result, expect: dict, root: str | None, fails: set | None):
    """`expect`: check -> catalogue entry (its exact message) or a phrase of the hint."""
    failing = {c.name for c in result.checks if c.status != "passed"}
    if fails is not None:
        assert failing == fails
    assert set(expect) <= failing, (set(expect), failing)
    for check in result.checks:
        hint = check.hint
        if check.status == "passed":
            assert hint is None, (check.name, hint)
            continue
        assert hint, f"d{check.name} fails without a hint: {check.message}"
        if check.name in expect:
            want = expect[check.name]
            if isinstance(want, Misconception):
                assert hint == want.hint(check.name), (check.name, hint)
            else:
                assert want in hint, (check.name, hint)
        elif check.name == TRAJECTORY:
            assert re.search(r"fix d\w+ first", hint), hint
        elif root is not None:  # a cascade: points at the first wrong gradient
            assert re.match(rf"First fix d{root}:|d{check.name} has NaN or inf .*first appear in d{root}",
                            hint), (check.name, hint)
        else:  # the same mistake, seen downstream (one-go exercises) or everywhere (hard-coded sizes)
            first = next(iter(expect.values()))
            phrase = first.title if isinstance(first, Misconception) else first
            assert (isinstance(first, Misconception) and hint == first.hint(check.name)) or phrase in hint, \
                (check.name, hint)
