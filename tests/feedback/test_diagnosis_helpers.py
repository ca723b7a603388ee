"""Helpers for the feedback tests (no tests here).

`score_file` scores a submission file without a worker process: the test
imports the (trusted, test-fixture) module itself and runs it on the cases
the way the worker does, then hands the answers to the real scoring code.
Only for tests: graded submissions always run in a worker.
`assert_feedback` checks the hints of one exercise result.
"""

import functools
import importlib.util
import itertools
from dataclasses import dataclass
import re
from pathlib import Path

import torch
import yaml
from safetensors.torch import save

from grader.course import mlp
from grader.scoring.compare import same_up_to_ones
from grader.course.mistakes import CATALOGUE
from grader.course.misconception import Misconception
from grader.course.mlp import FORWARD_ARGS, PARAMS
from grader.course.registry import EXERCISES
from grader.course.spec import TRAJECTORY
from grader.sandbox.inside.harness import student_traceback
from grader.sandbox.outcome import ExerciseRun
from grader.scoring.score import ExerciseScorer, score_exercise
from conftest import ROOT, TESTS

_counter = itertools.count()
FEEDBACK = TESTS / "fixtures" / "feedback"
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
    """The exercise function of a (trusted, test-fixture) file, imported in this process."""
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


def run_function(function, ex_id: str, cases, config, submission: str | None = None) -> ExerciseRun:
    """Run `function` on `cases` as the worker does; with `submission` (the folder of the file), an
    exception's traceback keeps the student's frames the way the worker writes it."""
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
                    if ex.trajectory is not None:
                        meta["trajectory"] = _trajectory(function, case, config, answers)
                except Exception as err:  # noqa: BLE001
                    tb = (student_traceback(err, submission) if submission is not None
                          else f"{type(err).__name__}: {err}")
                    meta["error"] = {"message": f"{ex.function} raised {type(err).__name__}", "traceback": tb}
                meta["notes"] = answers.notes
                run.results[case.spec.name] = (meta, answers.blob())
    finally:
        torch.set_default_dtype(previous)
    return run


def score_file(path: Path, ex_id: str, cases, config):
    """The ExerciseResult of one exercise file, scored by the real scoring code."""
    run = run_function(load_function(path, ex_id), ex_id, cases, config, str(Path(path).parent) + "/")
    return score_exercise(ex_id, config, cases, run)


def score_answers(ex_id: str, cases, config, answers_for, exercise=None):
    """Score answers built by `answers_for(case) -> {check: tensor}` (no student code at all);
    `exercise`: another definition of `ex_id` (its own misconceptions, say)."""
    ex = exercise or EXERCISES[ex_id]
    run = ExerciseRun()
    for case in cases:
        answers = Answers(16 * max(t.numel() for t in case.inputs.values()) + 4096)
        for key, value in answers_for(case).items():
            answers.add(key, value)
        run.results[case.spec.name] = ({"type": "result", "exercise": ex_id, "case": case.spec.name,
                                        "notes": answers.notes}, answers.blob())
    assert all(k in ex.checks for k in answers.notes)
    return ExerciseScorer(ex, config, cases).score(run)


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


# --- the mutation harness: single-edit mistakes of the reference solutions ---------------------

SOLUTIONS = ROOT / "solutions"
# Hints that name a cause no single edit of a reference solution can have (its dtype and its
# sizes are untouched), and factor hints on a ratio that is not a real factor.
_FALSE_CAUSES = (re.compile(r"float32 precision"), re.compile(r"hard-coded"))
_FACTOR = re.compile(r"(?:is|it is) (-?[0-9.e+-]+) times the right answer")
_VAGUE = re.compile(r"is very close \(relative error")


@functools.cache
def solution_mutants(ex_id: str):
    from grader.feedback.mutants import mutants

    ex = EXERCISES[ex_id]
    return mutants((SOLUTIONS / ex.file).read_text(), ex.function)


@functools.cache
def variant_mutants(ex_id: str):
    """The single-edit mutants of the correct files of other styles in fixtures/variants."""
    from grader.feedback.mutants import mutants

    ex = EXERCISES[ex_id]
    folder = TESTS / "fixtures" / "variants"
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())["variants"]
    return [m for v in manifest if v["correct"] and v["replaces"] == ex.file
            for m in mutants((folder / v["file"]).read_text(), ex.function)]


def _truly_right(run: ExerciseRun, ex_id: str, cases) -> bool:
    """An oracle apart from the grader's: every answer sent and within 1e-6 of autograd's."""
    from safetensors.torch import load as load_blob

    ex = EXERCISES[ex_id]
    for case in cases:
        meta, blob = run.results[case.spec.name]
        if "error" in meta:
            return False
        got = load_blob(blob) if blob else {}
        for check in ex.gradient_checks:
            s, r = got.get(check), case.references[ex_id][check]
            if s is None or not s.is_floating_point() or not same_up_to_ones(s.shape, r.shape):
                return False
            scale = max(float(r.abs().max()), 1e-3 * case.grad_scale)
            if not float((s.reshape(r.shape).double() - r.double()).abs().max()) <= 1e-6 * scale:
                return False
    return True


def wrong_cause(hint: str | None) -> str | None:
    """Why `hint` names a cause a single edit of a reference solution does not have, if it does."""
    if not hint:
        return None
    for pattern in _FALSE_CAUSES:
        if pattern.search(hint):
            return pattern.pattern
    m = _FACTOR.search(hint)
    if m:
        try:
            c = abs(float(m.group(1).rstrip(".")))
        except ValueError:
            return None
        if not 1e-3 < c < 1e3:
            return f"a factor of {m.group(1)}"
    return None


@dataclass
class MutantGrade:
    ex_id: str
    what: str                # the edit, for a person
    kind: str
    passed: bool             # the grader's verdict: every check passed
    truly_right: bool        # the oracle's
    raised: bool
    first: str | None        # the first gradient to fix
    hint: str | None         # its hint
    wrong: list[str]         # hints that name a cause the mutant does not have

    @property
    def verdict_right(self) -> bool:
        return self.passed == self.truly_right

    @property
    def specific(self) -> bool:
        return bool(self.hint) and not _VAGUE.search(self.hint) and wrong_cause(self.hint) is None


def grade_mutant(mutant, ex_id: str, cases, config, folder: Path) -> MutantGrade:
    from grader.course.mlp import ATOMIC

    path = folder / f"m{next(_counter)}" / EXERCISES[ex_id].file
    path.parent.mkdir(parents=True)
    path.write_text(mutant.source)
    run = run_function(load_function(path, ex_id), ex_id, cases, config, str(path.parent) + "/")
    result = score_exercise(ex_id, config, cases, run)
    failing = [c for c in result.checks if c.status != "passed"]
    first = min(failing, key=lambda c: ATOMIC.index(c.name) if c.name in ATOMIC else len(ATOMIC), default=None)
    hints = [c.hint for c in result.checks] + [r.hint for c in result.checks for r in c.cases]
    wrong = [h for h in hints if wrong_cause(h)]
    return MutantGrade(ex_id, mutant.edit.what, mutant.edit.kind, not failing, _truly_right(run, ex_id, cases),
                       any("error" in meta for meta, _ in run.results.values()),
                       first.name if first else None, first.hint if first else None, wrong)


def coverage(grades: list[MutantGrade]) -> dict:
    wrong = [g for g in grades if not g.passed]
    return {"mutants": len(grades), "verdicts_right": sum(g.verdict_right for g in grades),
            "wrong": len(wrong), "specific": sum(g.specific for g in wrong),
            "raised": sum(g.raised for g in wrong), "raised_specific": sum(g.specific for g in wrong if g.raised),
            "wrong_cause": sum(bool(g.wrong) for g in grades)}
