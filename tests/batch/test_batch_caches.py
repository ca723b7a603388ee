"""The batch's shortcuts change nothing a student sees: one-pass comparison, the diagnosis cache, the scan cache."""

import torch
from safetensors.torch import save

from grader.course.mlp import ATOMIC
from grader.course.registry import EXERCISES
from grader.sandbox.runner import ExerciseRun
from grader.feedback.engine import Diagnoser
from grader.scoring import passed_cache
from grader.scoring import score as scoring
from grader.scoring.compare import compare, compare_many
from grader.scoring.score import score_exercise
from grader.submission import scan_cache
from grader.submission.integrity import scan


# --- compare_many: the verdicts of compare, pair by pair ------------------------------------

def test_compare_many_gives_the_verdicts_of_compare():
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(4, 5, generator=g, dtype=torch.float64)
    row = torch.randn(1, 6, generator=g, dtype=torch.float64)
    zero = torch.zeros(6, dtype=torch.float64)
    nan = ref.clone()
    nan[1, 2] = float("nan")
    pairs = [
        (ref.clone(), ref, 2.0),                                   # exact
        (ref * (1 + 1e-14), ref, 2.0),                             # approximate
        (ref * 1.001, ref, 2.0),                                   # wrong values
        (-ref, ref, 0.5),                                          # wrong values, another scale
        (row.reshape(6), row, 1.0),                                # keepdim: accepted with a note
        (row.reshape(6) + 1e-3, row, 1.0),                         # keepdim and wrong
        (ref.T.contiguous(), ref, 1.0),                            # wrong shape
        (ref.to(torch.int64), ref, 1.0),                           # wrong dtype
        (ref.float(), ref, 1.0),                                   # float32 while grading in float64
        (torch.full((6,), 1e-19, dtype=torch.float64), zero, 3.0),  # a zero gradient: the case's floor
        (torch.full((6,), 1e-2, dtype=torch.float64), zero, 3.0),
        (torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64), 1.0),  # empty
        (torch.full((1, 6), 7.0, dtype=torch.float64), row, 1.0),
    ]
    expected = [compare(got, exp, scale=scale, rtol=1e-8) for got, exp, scale in pairs]
    assert compare_many(pairs, rtol=1e-8) == expected
    statuses = {v.status for v in expected}
    assert statuses == {"passed", "wrong_values", "wrong_shape", "wrong_type"}  # the cases above cover them all
    # a NaN anywhere: every pair still gets its own verdict, the NaN one "not finite"
    with_nan = [*pairs[:3], (nan, ref, 2.0), *pairs[4:6]]
    assert compare_many(with_nan, rtol=1e-8) == [compare(a, b, scale=s, rtol=1e-8) for a, b, s in with_nan]
    assert compare_many(with_nan, rtol=1e-8)[3].status == "not_finite"
    assert compare_many([], rtol=1e-8) == []


# --- the diagnosis cache ------------------------------------------------------------------------

def _run(cases, answers_for) -> ExerciseRun:
    """An atomic exercise's run whose answers are `answers_for(case)` (what a worker would have sent)."""
    run = ExerciseRun(seconds=0.5)
    for case in cases:
        answers = answers_for(case)
        meta = {"type": "result", "case": case.spec.name, "notes": {k: {"status": "ok"} for k in answers}}
        run.results[case.spec.name] = (meta, save({k: v.contiguous() for k, v in answers.items()}))
    return run


def _mistake(scale: float, at: str = "logprobs"):
    """The true gradients with d`at` (and, like a student's, everything after it) multiplied by `scale`."""
    def answers(case):
        true = case.references["atomic"]
        wrong = ATOMIC[ATOMIC.index(at):]
        return {k: v * scale if k in wrong else v.clone() for k, v in true.items()}
    return answers


def test_the_diagnosis_cache_gives_the_hints_found_without_it(config, all_cases, monkeypatch):
    calls = []
    real = Diagnoser.case
    monkeypatch.setattr(Diagnoser, "case", lambda self, *a: calls.append(1) or real(self, *a))
    scoring._DIAGNOSED.clear()
    run = _run(all_cases, _mistake(32.0))
    fresh = score_exercise("atomic", config, all_cases, run, Diagnoser)
    searched = len(calls)
    assert searched == len(all_cases)  # every case failed: each one diagnosed once
    again = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(32.0)), Diagnoser)
    assert len(calls) == searched  # the same answers: replayed, not searched again
    assert again.model_dump() == fresh.model_dump()
    assert any(c.hint for c in fresh.checks) and fresh.status != "passed"
    scoring._DIAGNOSED.clear()  # and without any cache at all: the same report
    assert score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(32.0)), Diagnoser).model_dump() == \
        fresh.model_dump()


def test_other_answers_are_diagnosed_on_their_own(config, all_cases):
    scoring._DIAGNOSED.clear()
    first = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(32.0)), Diagnoser)
    other = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(-1.0, at="h")), Diagnoser)
    scoring._DIAGNOSED.clear()
    alone = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(-1.0, at="h")), Diagnoser)
    assert other.model_dump() == alone.model_dump()
    assert [c.hint for c in other.checks] != [c.hint for c in first.checks]


def _only(at: str, change):
    def answers(case):
        true = case.references["atomic"]
        return {k: change(v) if k == at else v.clone() for k, v in true.items()}
    return answers


def test_answers_with_the_same_verdicts_are_still_told_apart(config, all_cases):
    # 3 dC and -dC are both off by 2 |dC|: the same statuses and messages, yet other mistakes
    scoring._DIAGNOSED.clear()
    tripled = score_exercise("atomic", config, all_cases, _run(all_cases, _only("C", lambda v: 3 * v)), Diagnoser)
    flipped = score_exercise("atomic", config, all_cases, _run(all_cases, _only("C", lambda v: -v)), Diagnoser)
    check = lambda result: next(c for c in result.checks if c.name == "C")  # noqa: E731
    assert check(tripled).message == check(flipped).message
    assert check(tripled).hint != check(flipped).hint
    scoring._DIAGNOSED.clear()
    alone = score_exercise("atomic", config, all_cases, _run(all_cases, _only("C", lambda v: -v)), Diagnoser)
    assert flipped.model_dump() == alone.model_dump()


def test_a_correct_case_needs_no_diagnosis(config, all_cases, monkeypatch):
    monkeypatch.setattr(Diagnoser, "case", lambda *a: (_ for _ in ()).throw(AssertionError("searched")))
    result = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(1.0)), Diagnoser)
    assert result.status == "passed" and all(c.hint is None for c in result.checks)


# --- the cache of answers that passed ------------------------------------------------------------

def test_answers_that_passed_before_are_not_compared_again(config, all_cases, monkeypatch):
    passed_cache.clear()
    fresh = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(1.0)), Diagnoser)
    assert fresh.status == "passed" and len(passed_cache._PASSED) == len(all_cases)
    compared = []
    real = scoring.compare_many
    monkeypatch.setattr(scoring, "compare_many", lambda *a, **k: compared.append(1) or real(*a, **k))
    again = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(1.0)), Diagnoser)
    assert compared == [] and again.model_dump() == fresh.model_dump()
    again.checks[0].cases[0].message = "changed by a caller"  # a copy: the next one is untouched
    assert score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(1.0)),
                          Diagnoser).model_dump() == fresh.model_dump()


def test_only_the_same_bytes_and_notes_reuse_a_pass(config, all_cases):
    passed_cache.clear()
    score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(1.0)), Diagnoser)
    # one bit off in the middle of one gradient: compared, and found wrong
    flipped = _only("h", lambda v: v + torch.where(torch.arange(v.numel()).reshape(v.shape) == 7, 1.0, 0.0))
    wrong = score_exercise("atomic", config, all_cases, _run(all_cases, flipped), Diagnoser)
    assert next(c for c in wrong.checks if c.name == "h").status == "failed"
    # the same bytes but a note that says the key was not a tensor: not a pass
    run = _run(all_cases, _mistake(1.0))
    for meta, _ in run.results.values():
        meta["notes"]["h"] = {"status": "wrong_type", "message": "got a list"}
    noted = score_exercise("atomic", config, all_cases, run, Diagnoser)
    assert next(c for c in noted.checks if c.name == "h").status == "failed"
    passed_cache.clear()
    assert score_exercise("atomic", config, all_cases, run, Diagnoser).model_dump() == noted.model_dump()


def test_the_passes_kept_stay_within_their_bytes(config, all_cases, monkeypatch):
    passed_cache.clear()
    monkeypatch.setattr(passed_cache, "PASSED_MAX_BYTES", 1)  # each one evicts the one before
    score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(1.0)), Diagnoser)
    assert len(passed_cache._PASSED) == 0 and passed_cache._PASSED_BYTES[0] == 0


def test_the_answers_a_course_shares_stay_while_answers_handed_in_once_pass_through(config, all_cases,
                                                                                    monkeypatch):
    """Least recently used out: the solutions' bits, seen again and again, outlive many one-off roundings."""
    passed_cache.clear()
    score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(1.0)), Diagnoser)
    one_submission = passed_cache._PASSED_BYTES[0]
    monkeypatch.setattr(passed_cache, "PASSED_MAX_BYTES", one_submission * 3 // 2)
    compared = []
    real = scoring.compare_many
    monkeypatch.setattr(scoring, "compare_many", lambda *a, **k: compared.append(1) or real(*a, **k))
    kept = []
    for i in range(1, 9):  # students with a rounding of their own: right, in bits nobody hands in again
        compared.clear()
        own = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(1.0 + i * 2 ** -50)), Diagnoser)
        assert own.status == "passed" and compared  # compared in full
        kept.append(passed_cache._PASSED_BYTES[0])
        compared.clear()
        shared = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(1.0)), Diagnoser)
        assert compared == [] and shared.status == "passed"  # the answers most hand in are still kept
    assert max(kept) <= one_submission * 3 // 2 and kept[-1] > one_submission  # full, within its bytes


def test_the_diagnoses_kept_stay_within_their_count(config, all_cases, monkeypatch):
    scoring._DIAGNOSED.clear()
    monkeypatch.setattr(scoring, "DIAGNOSED_MAX", len(all_cases))  # one submission's cases
    first = score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(32.0)), Diagnoser)
    score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(-1.0, at="h")), Diagnoser)
    assert len(scoring._DIAGNOSED) == len(all_cases)  # the first one's were let go: diagnosed again, the same
    assert score_exercise("atomic", config, all_cases, _run(all_cases, _mistake(32.0)), Diagnoser).model_dump() == \
        first.model_dump()


# --- the scan cache -----------------------------------------------------------------------------

CLEAN = "def embedding_backward(demb, Xb, vocab_size):\n    return demb.sum(0)\n"
CHEATS = "def embedding_backward(demb, Xb, vocab_size):\n    demb.backward()\n    return demb.sum(0)\n"


def test_the_scan_cache_follows_the_content_and_the_allow_list():
    scan_cache.clear()
    files = {EXERCISES["embedding"].file: CLEAN}
    assert scan_cache.scan(files) == scan(files) == []
    files[EXERCISES["embedding"].file] = CHEATS  # the same name, other text: scanned again
    found = scan_cache.scan(files)
    assert found == scan(files) and found and found[0].exercise == "embedding"
    assert scan_cache.scan({**files, "helper.py": "x = 1\n"}) == scan({**files, "helper.py": "x = 1\n"})
    rule = found[0].rule
    assert scan_cache.scan(files, [rule]) == scan(files, [rule]) != found  # allowed now: another answer
    assert scan_cache.scan(files) == found  # and back


def test_the_scan_cache_stays_within_its_findings(monkeypatch):
    scan_cache.clear()
    monkeypatch.setattr(scan_cache, "MAX_FINDINGS", 5)
    cheats = [{EXERCISES["embedding"].file: f"# student {i}\n{CHEATS}"} for i in range(6)]
    for files in cheats:
        assert scan_cache.scan(files) == scan(files) != []
        assert scan_cache._kept[0] == sum(map(len, scan_cache._found.values())) <= 5
    assert scan_cache.key(cheats[-1], ()) in scan_cache._found  # the newest stays, the oldest went first


def test_the_scan_cache_hands_out_copies():
    scan_cache.clear()
    files = {EXERCISES["embedding"].file: CHEATS}
    first = scan_cache.scan(files)
    first.append("not a finding")
    first[0].message = "changed by a caller"
    again = scan_cache.scan(files)
    assert again == scan(files) and len(again) == len(scan(files))
