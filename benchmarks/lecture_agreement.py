"""Agreement of lecture-mode grading with what each test notebook's own cmp lines say.

Grades every notebook under tests/fixtures/notebooks/patterns/ (one per layout and habit of
lecture-notebooks.md) and tests/fixtures/notebooks/students/ (whole student-like notebooks) and
compares each gradient's verdict with the notebook's metadata (`grader_test.expected_failing`: the
gradients its cmp lines would show as wrong; everything else of the exercises it holds is right).
Where the metadata says what exercise 4 should get (`train`: "full", "untouched", or the failing
`train` checks), its checks count too, and the share of exercise-4 notebooks graded is printed.
Prints the share of gradients and of notebooks that agree, and every disagreement.

    .venv/bin/python benchmarks/lecture_agreement.py [-v] [DIR ...]
"""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.config import load_config  # noqa: E402
from grader.pipeline import build_cases, grade  # noqa: E402
from grader.submission.lecture.sections import graded as graded_sections  # noqa: E402

NOTEBOOKS = ROOT / "tests" / "fixtures" / "notebooks"
DIRS = [NOTEBOOKS / "patterns", NOTEBOOKS / "students"]


def train_disagreements(report, expected) -> tuple[list[str], int, bool]:
    """(disagreements, checks compared, graded) of exercise 4 against the metadata's `train`."""
    ex = report.exercise("train")
    graded = ex is not None and ex.status not in ("not_submitted",) and bool(ex.checks)
    if expected is None:
        return ([] if not graded else [f"train: graded ({ex.status}), but the notebook has no exercise 4"]), 0, graded
    if not graded:
        return [f"train: not graded ({ex.status if ex else 'absent'}: {ex.message[:100] if ex else ''})"], 0, graded
    if expected == "untouched":
        ok = ex.score == 0 and all(c.status != "passed" for c in ex.checks)
        return ([] if ok else [f"train: untouched loop scored {ex.score:g}"]), len(ex.checks), graded
    failing = set() if expected == "full" else set(expected)
    wrong = [f"train.{c.name}: grader {c.status} ({c.message[:100]}), expected "
             f"{'failed' if c.name in failing else 'passed'}"
             for c in ex.checks if (c.status == "passed") == (c.name in failing)]
    return wrong, len(ex.checks), graded


def main() -> int:
    verbose = "-v" in sys.argv
    config = load_config(ROOT / "grading.yaml")
    cases = build_cases(config, None)
    agree = total = notebooks_ok = 0
    t0 = time.perf_counter()
    dirs = [Path(a) for a in sys.argv[1:] if not a.startswith("-")] or DIRS
    paths = [p for d in dirs for p in sorted(d.glob("*.ipynb"))]
    train_total = train_graded = train_agree = train_checks = 0
    for path in paths:
        meta = json.loads(path.read_text())["metadata"]["grader_test"]
        failing = set(meta["expected_failing"])
        report = grade(path, config, cases=cases)
        wrong = []
        for number in meta["exercises"]:
            ex = report.exercise(graded_sections()[number])
            for check in ex.checks:
                key = f"{ex.id}.{check.name}"
                expected_pass = key not in failing
                total += 1
                if (check.status == "passed") == expected_pass:
                    agree += 1
                else:
                    wrong.append(f"{key}: grader {check.status} ({check.message[:100]}), expected "
                                 f"{'passed' if expected_pass else 'failed'}")
        if "train" in meta:
            extra, compared, graded = train_disagreements(report, meta["train"])
            train_total += meta["train"] is not None
            train_graded += graded and meta["train"] is not None
            train_checks += compared
            train_agree += max(0, compared - len(extra)) if compared else 0
            wrong += extra
        missing_notes = [e for e in meta.get("expect", []) if not any(e in note for note in report.notebook.notes)]
        ok = not wrong and not missing_notes
        notebooks_ok += ok
        print(f"{'ok  ' if ok else 'DIFF'} {path.parent.name}/{path.name}: {report.score:g}/{report.max_score:g}")
        for line in wrong + [f"note not found: {e!r}" for e in missing_notes]:
            print("     ", line)
        if verbose:
            for note in report.notebook.notes:
                print("      note:", note)
    seconds = time.perf_counter() - t0
    print(f"gradients agreeing: {agree}/{total} = {100 * agree / max(1, total):.1f}%; "
          f"notebooks agreeing: {notebooks_ok}/{len(paths)}; {seconds:.1f} s")
    if train_total:
        print(f"exercise 4 graded: {train_graded}/{train_total}; its checks agreeing: {train_agree}/{train_checks}")
    return 0 if agree == total and notebooks_ok == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main())
