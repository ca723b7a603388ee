"""The LayerNorm course's maths, without the grader: its solution and its wrong formulas vs autograd."""

import importlib.util
from types import SimpleNamespace

import pytest
import torch

from conftest import ROOT

COURSE = ROOT / "examples" / "layernorm"


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


definition = _load(COURSE / "layernorm_exercise.py", "layernorm_exercise_under_test")
solution = _load(COURSE / "solutions" / "layernorm.py", "layernorm_solution_under_test")

SHAPES = [(2, 3, 8), (1, 1, 3), (4, 1, 5), (3, 7, 16)]  # (C = 2 makes dx vanish: xhat = +-1)
WRONG = {  # each wrong formula, and the gradient it is a wrong version of
    definition.dx_without_mean_term: "x",
    definition.dx_without_variance_term: "x",
    definition.dx_without_gamma: "x",
    definition.dgamma_not_summed: "gamma",
    definition.dbeta_not_summed: "beta",
}


def _case(shape, seed=0):
    return definition.make_case(torch.Generator().manual_seed(seed), *shape)


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_torch_layer_norm(shape):
    inputs, _ = _case(shape)
    beta = torch.randn(shape[-1], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out, mean, rstd = definition.forward(inputs["x"], inputs["gamma"], beta)
    expected = torch.nn.functional.layer_norm(inputs["x"], shape[-1:], inputs["gamma"], beta, eps=1e-5)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert mean.shape == rstd.shape == (*shape[:2], 1)


@pytest.mark.parametrize("shape", SHAPES)
def test_solution_matches_autograd(shape):
    inputs, references = _case(shape)
    assert all(t.dtype == torch.float64 for t in inputs.values())
    got = solution.layernorm_backward(**inputs)
    assert set(got) == {"x", "gamma", "beta"}
    for name, ref in references.items():
        assert got[name].shape == ref.shape
        scale = float(ref.abs().max())
        assert float((got[name] - ref).abs().max()) <= 1e-12 * scale, name


def test_cases_are_seeded_by_their_generator():
    (a, ra), (b, rb) = _case((2, 3, 4), seed=5), _case((2, 3, 4), seed=5)
    assert all(torch.equal(a[k], b[k]) for k in a) and all(torch.equal(ra[k], rb[k]) for k in ra)
    assert not torch.equal(a["x"], _case((2, 3, 4), seed=6)[0]["x"])


@pytest.mark.parametrize("wrong", WRONG, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", SHAPES)
def test_each_wrong_formula_is_far_from_the_truth(wrong, shape):
    inputs, references = _case(shape)
    ref = references[WRONG[wrong]]
    bad = wrong(SimpleNamespace(**inputs))
    if bad.shape == ref.shape:
        assert float((bad - ref).abs().max()) > 1e-3 * float(ref.abs().max())
    else:  # the not-summed ones keep one value per position
        assert bad.shape == inputs["x"].shape and ref.shape == (shape[-1],)
        torch.testing.assert_close(bad.sum((0, 1)), ref)


def test_the_worked_code_is_the_answer():
    inputs, references = _case((3, 4, 6))
    scope = {"torch": torch, **inputs}
    exec(definition.WORKED.code, scope)  # trusted course data, the hints' third level
    for name, ref in references.items():
        torch.testing.assert_close(scope[f"d{name}"], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("entry", definition.MISCONCEPTIONS, ids=lambda m: m.id)
def test_each_misconception_builds_its_wrong_formula(entry):
    inputs, references = _case((2, 3, 5))
    built = entry.build(SimpleNamespace(**inputs))
    assert entry.build in WRONG and WRONG[entry.build] == entry.at
    assert not (built.shape == references[entry.at].shape and torch.allclose(built, references[entry.at]))


def test_the_check_cell_compares_every_gradient_with_autograd():
    """The notebook check cell (data) runs on its own: torch, the solution and the notebook's cmp_all."""
    compared = []

    def cmp_all(names, mine, grads):
        compared.extend((name, mine[name], grads[name]) for name in names)

    scope = {"torch": torch, "layernorm_backward": solution.layernorm_backward, "cmp_all": cmp_all}
    exec((COURSE / "lessons" / "layernorm_check.py").read_text(), scope)
    assert [name for name, _, _ in compared] == ["x", "gamma", "beta"] * 2
    for name, mine, ref in compared:
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6, msg=name)
