"""The feedback (grader/feedback/: engine, catalogue, cascades, patterns), without worker processes.

Student code from the fixtures runs in this process (it is trusted test
code) and its answers go through the real scoring code, so every single
mistake of tests/fixtures/variants and tests/fixtures/feedback is checked in
a few seconds: the failing check names the mistake, every other failing
check points at it, and nothing that passes gets a hint.
"""


import dataclasses
import re
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import FIXTURES, VARIANTS
from test_diagnosis_helpers import FEEDBACK_MANIFEST, assert_feedback, feedback_expect, score_answers, score_file
from grader.course.misconception import Misconception
from grader.course.mistakes import CATALOGUE
from grader.course.steps import ANCESTORS, STEPS, Vars
from grader.feedback.catalogue import problems
from grader.feedback.engine import Diagnoser
from grader.feedback.labels import LABELS, FeedbackWarning
from grader.course.mlp import ATOMIC
from grader.course.registry import EXERCISES
from grader.course.spec import TRAJECTORY
from grader.outputs import terminal

FEEDBACK = FIXTURES / "feedback"
VARIANT_MANIFEST = yaml.safe_load((VARIANTS / "manifest.yaml").read_text())["variants"]
BY_ID = {e.id: e for e in CATALOGUE}

# The catalogue entry each single-mistake variant of fixtures/variants must be named by.
VARIANT_ENTRIES = {
    "atomic__dC_no_accumulate.py": "dC_no_accumulate",
    "atomic__dcounts_missing_branch.py": "dcounts_missing_branch",
    "atomic__dbndiff_missing_branch.py": "dbndiff_missing_branch",
    "atomic__dhprebn_missing_branch.py": "dhprebn_missing_branch",
    "atomic__no_bessel.py": "no_bessel",
    "atomic__missing_eps.py": "missing_eps",
    "atomic__tanh_hpreact.py": "tanh_hpreact",
    "atomic__db2_not_summed.py": "b2_not_summed",
    "atomic__wrong_sum_dim.py": "bngain_wrong_dim",
    "atomic__aliasing.py": "aliasing",
    "atomic__factor_n.py": "mean_missing_1_over_n",
    "cross_entropy__no_1_over_n.py": "dlogits_missing_1_over_n",
    "cross_entropy__missing_target.py": "dlogits_missing_target",
    "batchnorm__no_bessel.py": "no_bessel",
    "batchnorm__missing_mean_branch.py": "dhprebn_missing_branch",
    "batchnorm__wrong_sum_dim.py": "closed_form_wrong_dim",
    "embedding__no_accumulate.py": "dC_no_accumulate",
    "embedding__index_order.py": "embedding_index_order",
    "train__dC_no_accumulate.py": "dC_no_accumulate",
    "train__tanh_hpreact.py": "tanh_hpreact",
    "train__no_bessel.py": "no_bessel",
    "train__db1_not_summed.py": "b1_not_summed",
}
# Variants named by a generic pattern instead: a phrase of the hint.
VARIANT_PHRASES = {
    "atomic__wrong_sign.py": "wrong sign",
    "atomic__transposed.py": "transposed",
    "atomic__hardcoded_n.py": "hard-coded",
    "atomic__hardcoded_view.py": "hard-coded",
    "cross_entropy__hardcoded_n.py": "hard-coded",
    "cross_entropy__wrong_sign.py": "wrong sign",
    "batchnorm__hardcoded_n.py": "hard-coded",
    "batchnorm__factor_n.py": "extra factor n",
    "embedding__hardcoded_shape.py": "hard-coded",
    "train__hardcoded_n.py": "hard-coded",
}


def _exercise(replaces: str) -> str:
    return replaces.removesuffix(".py")


def _variant_cases():
    rows = []
    for v in VARIANT_MANIFEST:
        ex_id = _exercise(v["replaces"])
        if v["correct"]:
            rows.append(pytest.param(VARIANTS / v["file"], ex_id, {}, None, set(), id=v["file"]))
            continue
        fails = set(v["fails"])
        gradients = [c for c in EXERCISES[ex_id].checks if c in fails and c != TRAJECTORY]
        expected = BY_ID[VARIANT_ENTRIES[v["file"]]] if v["file"] in VARIANT_ENTRIES else VARIANT_PHRASES[v["file"]]
        if ex_id == "atomic" and v["mistake"] != "hardcoded_shape":  # (that one crashes: no cascade)
            root = min(gradients, key=ATOMIC.index)
            expect = {root: expected}
        else:
            root, expect = None, {c: expected for c in gradients}
        rows.append(pytest.param(VARIANTS / v["file"], ex_id, expect, root, fails, id=v["file"]))
    return rows


def _feedback_cases():
    return [pytest.param(FEEDBACK / v["file"], _exercise(v["replaces"]), *feedback_expect(v), None, id=v["file"])
            for v in FEEDBACK_MANIFEST]


@pytest.mark.parametrize("path, ex_id, expect, root, fails", _variant_cases())
def test_variants_get_the_right_feedback(path, ex_id, expect, root, fails, config, public_cases):
    assert_feedback(score_file(path, ex_id, public_cases, config), expect, root, fails)


@pytest.mark.parametrize("path, ex_id, expect, root, fails", _feedback_cases())
def test_mistakes_in_other_styles_are_named(path, ex_id, expect, root, fails, config, public_cases):
    assert_feedback(score_file(path, ex_id, public_cases, config), expect, root, fails)


def test_every_catalogue_entry_has_a_single_mistake_fixture():
    covered = set(VARIANT_ENTRIES.values()) | {v["entry"] for v in FEEDBACK_MANIFEST if v.get("entry")}
    assert {e.id for e in CATALOGUE} - covered == set()


@pytest.mark.parametrize("ex_id", list(EXERCISES))
def test_each_misconception_of_an_exercise_is_hit_by_one_of_its_fixtures(ex_id):
    """Every entry an exercise's definition lists is named by a fixture of that exercise (whose test
    above checks that the hint is the entry's own message): an entry no mistake reaches is dead weight."""
    ex = EXERCISES[ex_id]
    hit = {entry for file, entry in VARIANT_ENTRIES.items() if _exercise(file.split("__")[0] + ".py") == ex_id}
    hit |= {v["entry"] for v in FEEDBACK_MANIFEST if v.get("entry") and v["replaces"] == ex.file}
    assert problems(ex) == []
    assert [e.id for e in ex.misconceptions if e.id not in hit] == []


def test_catalogue_is_well_formed(public_cases):
    ids = [e.id for e in CATALOGUE]
    assert len(ids) == len(set(ids))
    case = public_cases[0]
    true = case.references["atomic"]
    for entry in CATALOGUE:  # the lecture's: each at a step of its backward pass
        assert entry.at in STEPS, entry.id
        assert entry.message and len(entry.message) < 400, entry.id
        assert not re.search(r"\d+\.\d+e|\(\d+, \d+\)", entry.title), entry.id  # no values, no shapes
        built = entry.build(Vars(case.inputs, true, case.ints))
        built = [built] if isinstance(built, torch.Tensor) else built
        for wrong in built:  # every variant really is wrong on the lecture's case
            ref = true[entry.at]
            assert wrong.shape != ref.shape or not torch.allclose(wrong, ref, rtol=1e-6, atol=1e-9), entry.id


def test_local_rules_reproduce_autograd(public_cases):
    for case in public_cases:
        true = case.references["atomic"]
        x = Vars(case.inputs, true, case.ints)
        for name, step in STEPS.items():
            got, want = step.rule(x), true[name]
            scale = max(float(want.abs().max()), 1e-3 * case.grad_scale)
            assert float((got.reshape(want.shape) - want).abs().max()) / scale < 1e-10, (case.spec.name, name)


def test_ancestors_follow_the_backward_pass():
    assert ANCESTORS["logprobs"] == set()
    assert ANCESTORS["counts"] == {"logprobs", "probs", "counts_sum_inv", "counts_sum"}
    assert "counts" in ANCESTORS["C"] and "hprebn" in ANCESTORS["C"]
    assert "bngain" not in ANCESTORS["C"]
    for name in ATOMIC:
        assert all(ATOMIC.index(a) < ATOMIC.index(name) for a in ANCESTORS[name])


def test_correct_solutions_get_no_hints(config, public_cases):
    from conftest import SOLUTIONS

    for ex_id, ex in EXERCISES.items():
        result = score_file(SOLUTIONS / ex.file, ex_id, public_cases, config)
        assert result.status == "passed"
        assert all(c.hint is None and all(r.hint is None for r in c.cases) for c in result.checks)


# --- generic patterns, from answers built directly --------------------------------------------


def _true(case, ex_id="atomic"):
    return {k: v.clone() for k, v in case.references[ex_id].items() if k != TRAJECTORY}


def _hint(result, check):
    return next(c for c in result.checks if c.name == check).hint


def test_constant_factors_are_named(config, public_cases):
    def answers(case):
        n = case.ints["n"]
        a = _true(case)
        a["counts_sum_inv"] = a["counts_sum_inv"] * n / (n - 1)
        a["W2"] = a["W2"] * 3.7
        a["emb"] = a["emb"] / n
        return a

    result = score_answers("atomic", public_cases, config, answers)
    assert "n/(n-1)" in _hint(result, "counts_sum_inv") and "Bessel" in _hint(result, "counts_sum_inv")
    assert "3.7 times the right answer" in _hint(result, "W2")
    assert "extra factor 1/n" in _hint(result, "emb")
    assert {c.name for c in result.checks if c.status != "passed"} == {"counts_sum_inv", "W2", "emb"}


def test_hard_coded_batch_size_is_recognised_per_case(config, public_cases):
    def answers(case):
        a = {"logits": case.references["cross_entropy"]["logits"] * case.ints["n"] / 32}
        return a

    result = score_answers("cross_entropy", public_cases, config, answers)
    check = result.checks[0]
    assert "hard-coded" in check.hint
    small = next(c for c in check.cases if c.case == "small")
    assert "32" in small.hint and "where n belongs" in small.hint


def test_shapes_values_and_other_tensors(config, public_cases):
    def answers(case):
        a = _true(case)
        a["emb"] = a["embcat"].clone()                      # right values, wrong shape
        a["hpreact"] = a["h"].clone()                       # the gradient of another tensor
        a["probs"] = case.inputs["probs"].clone()           # the forward tensor itself
        a["counts_sum"] = a["counts_sum"].expand(-1, 5) / 5  # a broadcast never summed
        a["bnvar"] = torch.zeros_like(a["bnvar"])
        return a

    result = score_answers("atomic", public_cases, config, answers)
    assert "right values in the wrong shape" in _hint(result, "emb")
    assert "values of dh" in _hint(result, "hpreact")
    assert "forward tensor probs" in _hint(result, "probs")
    assert "sum its gradient over dim 1" in _hint(result, "counts_sum")
    assert "all zeros" in _hint(result, "bnvar")


def test_transposed_matrix_product(config, public_cases):
    """dW1 = dhprebn.T @ embcat: a wrong shape, or, when W1 is square (the argmax case), wrong values."""
    def answers(case):
        a = _true(case)
        a["W1"] = a["W1"].T.contiguous()
        return a

    result = score_answers("atomic", public_cases, config, answers)
    check = next(c for c in result.checks if c.name == "W1")
    assert {c.status for c in check.cases} == {"wrong_shape", "wrong_values"}
    assert all("transposed" in c.hint for c in check.cases)


def test_float32_precision(config, public_cases):
    def answers(case):
        a = _true(case)
        a["W1"] = a["W1"].float()
        return a

    result = score_answers("atomic", public_cases, config, answers)
    assert "float32 precision" in _hint(result, "W1")


def test_nan_points_at_the_first_non_finite_gradient(config, public_cases):
    def answers(case):
        a = _true(case)
        for name in ATOMIC[ATOMIC.index("bnvar"):]:
            a[name] = a[name] * float("nan")
        return a

    result = score_answers("atomic", public_cases, config, answers)
    assert "first gradient of the backward pass" in _hint(result, "bnvar")
    for name in ("bndiff2", "hprebn", "C"):
        assert "first appear in dbnvar" in _hint(result, name)


def test_a_misconception_on_the_students_own_upstream(config, public_cases):
    """dbnvar forgets the 1e-5 and dbnvar_inv is also wrong: the local mistake is still named."""
    def answers(case):
        a = _true(case)
        a["bnvar_inv"] = a["bnvar_inv"] * 1.5
        a["bnvar"] = -0.5 * case.inputs["bnvar"] ** -1.5 * a["bnvar_inv"]
        return a

    result = score_answers("atomic", public_cases, config, answers)
    assert _hint(result, "bnvar") == BY_ID["missing_eps"].message


def test_an_upstream_and_a_local_mistake(config, public_cases):
    """dhpreact is wrong and dbnraw forgets something of its own: fix dhpreact first."""
    def answers(case):
        a = _true(case)
        a["hpreact"] = a["hpreact"] * 2
        a["bnraw"] = a["hpreact"] * 0.3
        return a

    result = score_answers("atomic", public_cases, config, answers)
    assert _hint(result, "bnraw") == ("dbnraw is computed from dhpreact, which is wrong: fix dhpreact first, "
                                      "then check this step again.")


def test_an_exercise_definition_adds_its_own_entry(config, public_cases):
    """A course adds a misconception by listing it in the exercise's definition (tried after the others)."""
    atomic = EXERCISES["atomic"]
    entry = Misconception("probs_squared", "probs", "dprobs uses probs**2", lambda x: x.dlogprobs / x.probs**2,
                          "dprobs: the derivative of log(x) is 1/x, not 1/x**2.")
    ex = dataclasses.replace(atomic, misconceptions=(*atomic.misconceptions, entry))

    def answers(case):
        a = _true(case)
        a["probs"] = a["logprobs"] / case.inputs["probs"] ** 2
        return a

    assert _hint(score_answers("atomic", public_cases, config, answers, exercise=ex), "probs") == entry.message
    assert _hint(score_answers("atomic", public_cases, config, answers), "probs") != entry.message  # its own only


def test_a_broken_catalogue_warns_and_costs_only_the_hint(config, public_cases):
    """Two entries with one id, an entry at no gradient of the exercise, an entry that raises: each warns
    (FeedbackWarning, an error in this suite: pyproject's filterwarnings); the grade is unchanged."""
    atomic = EXERCISES["atomic"]
    twice = dataclasses.replace(atomic, misconceptions=(*atomic.misconceptions, atomic.misconceptions[0]))
    with pytest.warns(FeedbackWarning, match="two misconceptions are called"):
        Diagnoser(twice, public_cases, config.tolerance)
    nowhere = Misconception("nowhere", "gamma", "a typo", lambda x: x.dgamma, "never shown")
    with pytest.warns(FeedbackWarning, match="sits at dgamma, which is neither a check"):
        Diagnoser(dataclasses.replace(atomic, misconceptions=(nowhere,)), public_cases, config.tolerance)

    def raises(x):
        raise KeyError("a typo in the entry")

    broken = Misconception("broken", "probs", "a typo", raises, "never shown")
    ex = dataclasses.replace(atomic, misconceptions=(broken, *atomic.misconceptions))

    def answers(case):
        a = _true(case)
        a["probs"] = a["probs"] * 3.7
        return a

    with pytest.warns(FeedbackWarning, match="misconception 'broken' raised on case"):
        result = score_answers("atomic", public_cases, config, answers, exercise=ex)
    assert "3.7 times the right answer" in _hint(result, "probs")  # the other strategies still ran
    assert result.score == score_answers("atomic", public_cases, config, answers).score


def test_hidden_cases_get_generic_labels_only(config, all_cases):
    path = VARIANTS / "atomic__no_bessel.py"
    result = score_file(path, "atomic", all_cases, config)
    allowed = {f"likely cause: {label}" for label in LABELS.values()} | {
        f"likely cause: {e.title}" for e in CATALOGUE}
    seen = set()
    for check in result.checks:
        for case in check.cases:
            if case.visibility != "hidden":
                continue
            assert case.max_abs_diff is None and case.rel_err is None and case.exact is None
            assert case.got_shape is None and case.expected_shape is None and case.note is None
            if case.hint is not None:
                assert case.hint in allowed, case.hint
                seen.add(case.hint)
    assert seen == {"likely cause: Bessel's correction (1/(n-1)) is missing",
                    f"likely cause: {LABELS['cascade']}"}
    # the terminal reads the same labels (grader.feedback.labels, no torch): a hidden failure that only
    # repeats an upstream mistake adds no line; the root's names its cause
    lines = {c.name: terminal.hidden_line(c) for c in result.checks if c.status != "passed"}
    assert lines["hprebn"] is None
    assert "Bessel's correction (1/(n-1)) is missing" in lines["bndiff2"]


def test_the_labels_the_outputs_read_need_no_torch():
    code = "import sys, grader.feedback.labels, grader.outputs.terminal; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_failure_seen_only_on_hidden_cases_stays_generic(config, all_cases):
    hidden_vocab = {c.ints["vocab_size"] for c in all_cases if c.spec.hidden}
    public_vocab = {c.ints["vocab_size"] for c in all_cases if not c.spec.hidden}
    odd = sorted(hidden_vocab - public_vocab)[0]

    def answers(case):
        dlogits = case.references["cross_entropy"]["logits"].clone()
        return {"logits": dlogits * 2 if case.ints["vocab_size"] == odd else dlogits}

    result = score_answers("cross_entropy", all_cases, config, answers)
    check = result.checks[0]
    assert check.status == "partial"
    assert check.hint.startswith("Passes every public case but not 1 of the 3 hidden ones "
                                 "(likely cause: off by a constant factor)")
    assert not re.search(r"\d\.\de[+-]\d\d|\(\d+, \d+\)|n = \d", check.hint + check.message)
