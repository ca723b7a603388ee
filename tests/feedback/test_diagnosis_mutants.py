"""Single-edit mistakes of the reference solutions (the mutation harness) and the hint levels.

A fixed, fast subset of the mutants of grader.feedback.mutants (every 13th, all five
exercises) is graded once per module, in this process, by the real scoring
code: every verdict agrees with an independent check against autograd, at
least 80% of the wrong ones get a specific hint on the first gradient to
fix, and no hint names a cause the mutant does not have. The full run is
benchmarks/hint_coverage.py.
"""

import re
from pathlib import Path

import pytest
import torch

from test_diagnosis_helpers import (
    coverage, grade_mutant, score_answers, score_file, solution_mutants, wrong_cause,
)
from grader.feedback import nearmiss
from grader.course.registry import EXERCISES
from grader.course.spec import TRAJECTORY
from grader.course.steps import RULES
from conftest import ROOT

SUBSET_EVERY = 13


def fixed_subset(ex_id: str) -> list:
    """Every SUBSET_EVERY-th mutant of each kind of edit (so every kind is in), in a fixed order."""
    by_kind = {}
    for m in solution_mutants(ex_id):
        by_kind.setdefault(m.edit.kind, []).append(m)
    return [m for kind in sorted(by_kind) for m in by_kind[kind][::SUBSET_EVERY]]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: torch's threads only cost time here, a lot of it on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def subset(config, public_cases, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mutants")
    return [grade_mutant(m, ex_id, public_cases, config, folder) for ex_id in EXERCISES for m in fixed_subset(ex_id)]


def test_the_subset_covers_every_exercise_and_kind_of_edit(subset):
    assert {g.ex_id for g in subset} == set(EXERCISES)
    assert {g.kind for g in subset} == {"binop", "augop", "constant", "dim", "keepdim", "drop_T", "drop_term",
                                        "drop_branch", "swap_var", "sign"}
    assert sum(g.raised for g in subset) >= 5


def test_verdicts_agree_with_autograd(subset):
    assert [g.what for g in subset if not g.verdict_right] == []


def test_most_wrong_mutants_get_a_specific_hint(subset):
    c = coverage(subset)
    assert c["wrong"] >= 40
    missed = [(g.ex_id, g.what, g.hint) for g in subset if not g.passed and not g.specific]
    assert c["specific"] >= 0.8 * c["wrong"], missed


def test_no_hint_names_a_cause_the_mutant_does_not_have(subset):
    assert [(g.ex_id, g.what, g.wrong[:1]) for g in subset if g.wrong] == []


def test_wrong_cause_oracle():
    assert wrong_cause("dW1 is right only up to float32 precision (relative error 1e-07)")
    assert wrong_cause("dC is 1.048e-14 times the right answer: the formula is right up to a constant factor")
    assert wrong_cause("dC has an extra factor n/32 (it is 0.5 times the right answer, n = 16): a hard-coded 32")
    assert not wrong_cause("dW2 has an extra factor n (it is 32 times the right answer, n = 32): a 1/n is missing")
    assert not wrong_cause(None)


# --- the mistakes the issue names, one by one ---------------------------------------------------


def _mutant(ex_id: str, after: str):
    return next(m for m in solution_mutants(ex_id) if m.edit.after == after)


def _grade(ex_id, after, config, public_cases, tmp_path):
    m = _mutant(ex_id, after)
    path = tmp_path / EXERCISES[ex_id].file
    path.write_text(m.source)
    return score_file(path, ex_id, public_cases, config)


def _check(result, name):
    return next(c for c in result.checks if c.name == name)


@pytest.mark.parametrize("ex_id, after, check, phrase", [
    ("atomic", "dprobs = 1.0 * probs * dlogprobs", "probs", "`*` where the rule has `/`"),
    ("atomic", "dlogits += F.one_hot(logits.max(0).indices, num_classes=logits.shape[1]) * dlogit_maxes",
     "logits", "dim 0 where the rule has dim 1"),
    ("atomic", "dhpreact = (1.0 + h ** 2) * dh", "hpreact", "`+` where the rule has `-`"),
    ("train", "dhpreact = (1.0 + h ** 2) * dh", "bngain", "the line for dhpreact: `+` where the rule has `-`"),
    ("cross_entropy", "dlogits[range(n), Yb] += 1", "logits", "`+=` where the rule has `-=`"),
    ("batchnorm", "dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n + 1) * bnraw * "
                  "(dhpreact * bnraw).sum(0))", "hprebn", "`+` where the rule has `-`"),
])
def test_named_slips(ex_id, after, check, phrase, config, public_cases, tmp_path):
    result = _grade(ex_id, after, config, public_cases, tmp_path)
    c = _check(result, check)
    assert c.status != "passed"
    assert phrase in c.hint, c.hint
    assert c.hint_levels[0] == c.hint and len(c.hint_levels) == 3
    assert c.hint_levels[1].startswith(("The local rule:", "The rule:"))
    assert c.hint_levels[2].startswith("The worked expression:")


def test_a_dropped_transpose_that_raises(config, public_cases, tmp_path):
    result = _grade("atomic", "dh = dlogits @ W2", config, public_cases, tmp_path)
    c = _check(result, "logprobs")  # every check of a case that raised says where it stopped
    lecture = next(r for r in c.cases if r.case == "lecture")
    assert lecture.status == "error"
    assert "`dlogits @ W2` does not multiply (32, 27) by (64, 27)" in lecture.hint
    assert "did you mean `dh = dlogits @ W2.T`?" in lecture.hint
    assert "which computes dh" in c.hint
    assert c.hint_levels[1].startswith("The local rule: logits = h @ W2 + b2")


def test_a_right_line_that_raises_on_a_wrong_upstream_shape(config, public_cases, tmp_path):
    result = _grade("atomic", "dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=False)", config, public_cases,
                    tmp_path)
    hint = _check(result, "logprobs").hint
    assert "this line is right" in hint and "dcounts_sum must have the shape of counts_sum, (32, 1)" in hint, hint
    assert "without keepdim=True" in hint


def test_an_in_place_add_to_a_gradient_of_the_wrong_shape(config, public_cases, tmp_path):
    result = _grade("atomic", "dcounts = counts_sum_inv", config, public_cases, tmp_path)
    hint = _check(result, "logprobs").hint
    assert "dcounts must have the shape of counts, (32, 27), but has shape (32, 1)" in hint, hint


@pytest.mark.parametrize("traceback", [
    "",
    "garbage\nwithout frames",
    'Traceback\n  File "atomic.py", line 3, in backward_atomic\n    dh = (dlogits @\nRuntimeError: boom',
    'Traceback\n  File "atomic.py", line 3, in helper\n    return my_helper(x) @ W2\nNameError: name',
    'Traceback\n  File "atomic.py", line 3, in f\n    import os; os.system("x")\nRuntimeError: boom',
])
def test_tracebacks_without_a_confirmed_repair_give_no_hint(traceback, public_cases):
    case = public_cases[0]
    true = case.references["atomic"]
    values = {**case.inputs, **{f"d{k}": v for k, v in true.items()}, **case.ints}
    r = nearmiss.diagnose_raised(traceback, [RULES["h"][2]], values, true)
    assert r is None or nearmiss.raised_message(r, "backward_atomic") is None


def test_a_line_from_the_worker_is_never_run(public_cases, tmp_path):
    """The traceback comes from the sandbox: a line that is not the rule with one slip is only parsed."""
    case = public_cases[0]
    true = case.references["atomic"]
    values = {**case.inputs, **{f"d{k}": v for k, v in true.items()}, **case.ints}
    marker = tmp_path / "ran"
    for code in (f"dh = dlogits @ open({str(marker)!r}, 'w').write('x')",
                 f"dh = dlogits @ W2 + __import__('pathlib').Path({str(marker)!r}).touch()",
                 "dh = torch.ones(10 ** 6, 10 ** 6) @ W2"):
        tb = f'  File "atomic.py", line 3, in backward_atomic\n    {code}\nRuntimeError: boom'
        assert nearmiss.diagnose_raised(tb, [RULES[k][2] for k in RULES], values, true) is None
    assert not marker.exists()


def test_a_near_zero_ratio_is_not_called_a_factor(config, public_cases):
    def answers(case):
        a = {k: v.clone() for k, v in case.references["atomic"].items()}
        a["W2"] = a["W2"] * 1e-14
        return a

    result = score_answers("atomic", public_cases, config, answers)
    hint = _check(result, "W2").hint or ""
    assert "times the right answer" not in hint


def test_hidden_cases_get_a_label_as_their_only_level(config, all_cases, tmp_path):
    from grader.feedback.labels import LABELS

    result = _grade("atomic", "dprobs = 1.0 * probs * dlogprobs", config, all_cases, tmp_path)
    seen = set()
    for check in result.checks:
        for case in check.cases:
            if case.visibility == "hidden":
                assert case.hint_levels == ([case.hint] if case.hint else [])
                assert case.hint is None or case.hint.removeprefix("likely cause: ") in LABELS.values()
                seen.add(case.hint)
            else:
                assert not case.hint_levels or case.hint_levels[0] == case.hint
    assert "likely cause: a wrong operator in a local rule" in seen


# --- the worked expressions are right ----------------------------------------------------------


def test_worked_expressions_reproduce_autograd(public_cases):
    for case in public_cases:
        true = case.references["atomic"]
        values = {**case.inputs, **{f"d{k}": v for k, v in true.items()}, **case.ints}
        for name, (_, _, code) in RULES.items():
            got = nearmiss.run(code, {k: v for k, v in values.items() if k != f"d{name}"})[f"d{name}"]
            assert torch.allclose(got.reshape(true[name].shape), true[name], rtol=1e-9, atol=1e-12), name
        for ex_id, ex in EXERCISES.items():
            if ex.worked is None or not ex.worked.code:
                continue
            ns = nearmiss.run(ex.worked.code, nearmiss.one_go_values(case.inputs, case.ints, ex.tensor_args))
            for check in ex.gradient_checks:
                want = case.references[ex_id][check]
                got = ns[f"d{check}"].reshape(want.shape)
                assert torch.allclose(got, want, rtol=1e-9, atol=1e-12), (ex_id, check)


def test_mutants_are_single_edits_that_parse():
    source = (ROOT / "solutions" / "cross_entropy.py").read_text()
    from grader.feedback.mutants import mutants

    found = mutants(source, "cross_entropy_backward")
    assert found and all(m.edit.before != m.edit.after for m in found)
    for m in found:
        compile(m.source, "m.py", "exec")
    assert any(m.edit.kind == "dim" and "F.softmax(logits, 0)" in m.edit.after for m in found)


def test_rounding_noise_after_a_huge_upstream_error_is_a_cascade(config, public_cases):
    """dcounts is 1e9 times too large and every later step is right given it: dlogit_maxes, zero in truth,
    comes back as rounding noise of the huge values; it is a cascade, not float32 or a hard-coded size."""
    from grader.course.steps import propagate

    def answers(case):
        true = {k: v.clone() for k, v in case.references["atomic"].items()}
        return propagate(case.inputs, true, case.ints, "counts", true["counts"] * 1e9)

    result = score_answers("atomic", public_cases, config, answers)
    assert "dcounts is 1e+09 times the right answer" in _check(result, "counts").hint
    for check in result.checks:
        if check.status == "passed" or check.name == "counts":
            continue
        assert check.hint.startswith("First fix dcounts:"), (check.name, check.hint)
    assert _check(result, "logit_maxes").status != "passed"
