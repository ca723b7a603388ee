"""A course's own exercise, outside the lecture's model, gets its own misconceptions' hints.

The exercise is defined here, the way a course defines one (a definition file named by its
grading.yaml's `definitions`): an affine map over the last dimension, `y = gamma * x + beta`,
graded on `dx`, `dgamma` and `dbeta`, with two misconceptions at `dgamma` built from the case's
inputs and the exercise's own true gradients. Nothing of the lecture's model (no ATOMIC, no
steps) is involved: the engine works from the definition alone.
"""

import textwrap

import pytest
import yaml

from conftest import ROOT, SECRET
from test_diagnosis_helpers import score_answers
from grader.config import load_config
from grader.course.registry import EXERCISES
from grader.pipeline import build_cases

DEFINITION = textwrap.dedent('''
    """A course's exercise: the backward pass of y = gamma * x + beta, gamma and beta over the last dim."""
    import torch

    from grader.course.misconception import Misconception
    from grader.course.spec import Exercise, GradientCheck


    def build(case, generator):
        n, c = case.spec.n, case.spec.n_embd
        def draw(*shape):
            return torch.randn(shape, generator=generator, dtype=case.dtype)
        x, gamma, beta, dout = draw(n, c), draw(c), draw(c), draw(n, c)
        leaves = [t.clone().requires_grad_(True) for t in (x, gamma, beta)]
        ((leaves[1] * leaves[0] + leaves[2]) * dout).sum().backward()
        return ({"dout": dout, "x": x, "gamma": gamma},
                {"x": leaves[0].grad, "gamma": leaves[1].grad, "beta": leaves[2].grad})


    EXERCISE = Exercise(
        id="affine", title="An affine map in one go", file="affine.py", function="affine_backward",
        tensor_args=("dout", "x", "gamma"),
        checks=(GradientCheck("x"), GradientCheck("gamma"), GradientCheck("beta")),
        build=build,
        misconceptions=(
            Misconception("affine_dgamma_not_summed", "gamma", "dgamma kept one row per example",
                          lambda v: v.dout * v.x,
                          "dgamma keeps a row per example: gamma is shared by every row, so add them up, "
                          "(dout * x).sum(0)."),
            Misconception("affine_dgamma_without_x", "gamma", "dgamma forgets x",
                          lambda v: v.dbeta,
                          "dgamma is dbeta: y = gamma * x + beta, so each row's dout is multiplied by its x "
                          "before the sum."),
        ),
    )
''')


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The course's config (only its own exercise) and its public and hidden cases, built once."""
    folder = tmp_path_factory.mktemp("course")
    (folder / "affine.py").write_text(DEFINITION)
    policy = yaml.safe_load((ROOT / "grading.yaml").read_text())
    policy["exercises"] = {"affine": {"points": 10}}
    policy["definitions"] = ["affine.py"]
    (folder / "grading.yaml").write_text(yaml.safe_dump(policy))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(EXERCISES, "affine", None)  # (the test's own id leaves the registry afterwards)
        config = load_config(folder / "grading.yaml")
        yield config, build_cases(config, SECRET)


def _answers(change):
    def answers(case):
        true = {k: v.clone() for k, v in case.references["affine"].items()}
        inputs = case.inputs
        true["gamma"] = change(inputs, true)
        return true
    return answers


@pytest.mark.parametrize("change, entry", [
    (lambda i, t: i["dout"] * i["x"], 0),
    (lambda i, t: t["beta"].clone(), 1),
])
def test_its_own_misconception_names_the_mistake(course, change, entry):
    config, cases = course
    ex = EXERCISES["affine"]
    assert all(set(case.references) == {"affine"} and not case.gradients for case in cases)  # no lecture model
    result = score_answers("affine", cases, config, _answers(change))
    checks = {c.name: c for c in result.checks}
    assert checks["x"].status == checks["beta"].status == "passed"
    gamma = checks["gamma"]
    assert gamma.status == "failed"
    misconception = ex.misconceptions[entry]
    assert gamma.hint == misconception.message
    public = [c for c in gamma.cases if c.visibility == "public"]
    hidden = [c for c in gamma.cases if c.visibility == "hidden"]
    assert public and hidden
    assert all(c.hint == misconception.message for c in public)
    assert all(c.hint == f"likely cause: {misconception.title}" for c in hidden)  # never the message


def test_other_mistakes_get_the_generic_patterns(course):
    config, cases = course
    result = score_answers("affine", cases, config, _answers(lambda i, t: -t["gamma"]))
    gamma = next(c for c in result.checks if c.name == "gamma")
    assert "wrong sign" in gamma.hint and not any(e.message == gamma.hint for e in EXERCISES["affine"].misconceptions)
