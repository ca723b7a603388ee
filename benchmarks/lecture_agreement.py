"""Agreement of lecture-mode grading with what each test notebook's own cmp lines say.

Grades every notebook under tests/fixtures/notebooks/patterns/ (one per layout and habit of
lecture-notebooks.md) and compares each gradient's verdict with the notebook's metadata
(`grader_test.expected_failing`: the gradients its cmp lines would show as wrong; everything else
of the exercises it holds is right). Prints the share of gradients and of notebooks that agree,
and every disagreement.

    .venv/bin/python benchmarks/lecture_agreement.py [-v]
"""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.config import load_config  # noqa: E402
from grader.grading import build_cases, grade  # noqa: E402
from grader.lecture import GRADED  # noqa: E402

PATTERNS = ROOT / "tests" / "fixtures" / "notebooks" / "patterns"


def main() -> int:
    verbose = "-v" in sys.argv
    config = load_config(ROOT / "grading.yaml")
    cases = build_cases(config, None)
    agree = total = notebooks_ok = 0
    t0 = time.perf_counter()
    paths = sorted(PATTERNS.glob("*.ipynb"))
    for path in paths:
        meta = json.loads(path.read_text())["metadata"]["grader_test"]
        failing = set(meta["expected_failing"])
        report = grade(path, config, cases=cases)
        wrong = []
        for number in meta["exercises"]:
            ex = report.exercise(GRADED[number])
            for check in ex.checks:
                key = f"{ex.id}.{check.name}"
                expected_pass = key not in failing
                total += 1
                if (check.status == "passed") == expected_pass:
                    agree += 1
                else:
                    wrong.append(f"{key}: grader {check.status} ({check.message[:100]}), expected "
                                 f"{'passed' if expected_pass else 'failed'}")
        missing_notes = [e for e in meta.get("expect", []) if not any(e in note for note in report.notebook.notes)]
        ok = not wrong and not missing_notes
        notebooks_ok += ok
        print(f"{'ok  ' if ok else 'DIFF'} {path.name}: {report.score:g}/{report.max_score:g}")
        for line in wrong + [f"note not found: {e!r}" for e in missing_notes]:
            print("     ", line)
        if verbose:
            for note in report.notebook.notes:
                print("      note:", note)
    seconds = time.perf_counter() - t0
    print(f"gradients agreeing: {agree}/{total} = {100 * agree / max(1, total):.1f}%; "
          f"notebooks agreeing: {notebooks_ok}/{len(paths)}; {seconds:.1f} s")
    return 0 if agree == total and notebooks_ok == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main())
