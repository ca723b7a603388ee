"""Correct alternatives get full marks; single-mistake variants lose exactly the checks they break.

The variants and the exact set of checks each one breaks are listed in
fixtures/variants/manifest.yaml (verified against autograd independently of
the grader). To keep the suite fast, one submission carries one variant of
each exercise file at a time: the exercises are graded independently, so
each variant is still judged on its own exercise.
"""

import itertools

import pytest
import yaml

from conftest import VARIANTS, failing_checks
from grader.course.registry import EXERCISES

MANIFEST = yaml.safe_load((VARIANTS / "manifest.yaml").read_text())["variants"]
FILE_TO_EXERCISE = {ex.file: ex.id for ex in EXERCISES.values()}


def _bundles():
    by_file = {}
    for entry in MANIFEST:
        by_file.setdefault(entry["replaces"], []).append(entry)
    rows = itertools.zip_longest(*by_file.values())
    return [[e for e in row if e is not None] for row in rows]


BUNDLES = _bundles()


def test_manifest_covers_enough_variants():
    correct = [v for v in MANIFEST if v["correct"]]
    wrong = [v for v in MANIFEST if not v["correct"]]
    assert len(wrong) >= 10 and len(correct) >= 15
    for ex in EXERCISES.values():
        assert sum(v["replaces"] == ex.file for v in correct) >= 3, ex.file
    assert any(v["only_lecture_shape"] for v in wrong)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: "+".join(e["file"].removesuffix(".py") for e in b))
def test_variant_bundle(bundle, submission, grade_it):
    sub = submission(replace={e["replaces"]: (VARIANTS / e["file"]).read_text() for e in bundle})
    report = grade_it(sub)
    for entry in bundle:
        ex_id = FILE_TO_EXERCISE[entry["replaces"]]
        exercise = report.exercise(ex_id)
        expected = set(entry["fails"])
        assert failing_checks(report, ex_id) == expected, (entry["file"], exercise.message)
        if entry["correct"]:
            assert exercise.score == exercise.max_score
            assert exercise.status == "passed"
        for check in exercise.checks:
            lecture = next(c for c in check.cases if c.case == "lecture")
            if check.name not in expected or entry["only_lecture_shape"]:
                assert lecture.passed, (entry["file"], check.name, lecture.message)
            else:
                assert not lecture.passed and lecture.message, (entry["file"], check.name)
            if check.name in expected:
                assert check.message, (entry["file"], check.name)
    # Exercises not touched by this bundle keep full marks.
    touched = {FILE_TO_EXERCISE[e["replaces"]] for e in bundle}
    for exercise in report.exercises:
        if exercise.id not in touched:
            assert exercise.score == exercise.max_score


def test_hardcoded_shapes_pass_lecture_case_only(submission, grade_it):
    """Code written for the lecture's sizes passes the cases with those sizes and fails the others."""
    sub = submission(replace={"embedding.py": (VARIANTS / "embedding__hardcoded_shape.py").read_text(),
                              "cross_entropy.py": (VARIANTS / "cross_entropy__hardcoded_n.py").read_text()})
    report = grade_it(sub)
    # `pair` keeps the lecture's vocab and n_embd (so a hard-coded (27, 10) survives) but has n=2.
    expected = {("embedding", "C"): {"lecture": True, "pair": True, "small": False, "argmax": False},
                ("cross_entropy", "logits"): {"lecture": True, "pair": False, "small": False, "argmax": False}}
    for (ex_id, check), outcome in expected.items():
        result = next(c for c in report.exercise(ex_id).checks if c.name == check)
        assert {c.case: c.passed for c in result.cases} == outcome
        passed = sum(outcome.values())
        assert result.score == pytest.approx(result.max_score * passed / 4)  # partial credit
        assert report.exercise(ex_id).status == "partial"
