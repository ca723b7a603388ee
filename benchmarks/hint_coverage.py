"""How many single-edit mistakes of the reference solutions get a specific, right hint.

    .venv/bin/python benchmarks/hint_coverage.py [--exercise atomic] [--every 1] [--show wrong|missed]

Makes every single-edit mutant of solutions/*.py (grader.feedback.mutants: operators
swapped, constants changed, dims and keepdim flipped, a .T dropped, a term
dropped, a variable swapped), grades each in this process on the public cases
(no worker: the mutants are the grader's own code), and prints: verdicts that
agree with an independent check against autograd, the share of the wrong ones
whose first gradient to fix gets a specific hint, and hints that name a cause
the mutant cannot have (float32 precision, hard-coded sizes, a "factor" that
is no factor). The test suite runs a fixed subset (tests/feedback/test_diagnosis_mutants.py).
With --sources variants it mutates the correct submissions of other styles in
tests/fixtures/variants instead: the hints must not depend on the solutions' style.
"""

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "feedback")]  # conftest, and the feedback helpers

from test_diagnosis_helpers import coverage, grade_mutant, solution_mutants, variant_mutants  # noqa: E402

import torch  # noqa: E402

from grader.config import load_config  # noqa: E402
from grader.course.registry import EXERCISES  # noqa: E402
from grader.pipeline import build_cases  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared machine
    parser = argparse.ArgumentParser()
    parser.add_argument("--exercise", action="append", choices=list(EXERCISES))
    parser.add_argument("--every", type=int, default=1, help="grade every k-th mutant only")
    parser.add_argument("--show", choices=["wrong", "missed"], action="append", default=[])
    parser.add_argument("--sources", choices=["solutions", "variants"], default="solutions",
                        help="mutate solutions/*.py (default), or the correct files of other styles in "
                             "tests/fixtures/variants (a check that the hints do not depend on the solutions' style)")
    args = parser.parse_args()
    config = load_config(ROOT / "grading.yaml")
    cases = build_cases(config, None)
    grades = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for ex_id in args.exercise or list(EXERCISES):
            source = solution_mutants if args.sources == "solutions" else variant_mutants
            for mutant in source(ex_id)[::args.every]:
                grades.append(grade_mutant(mutant, ex_id, cases, config, Path(tmp)))
    seconds = time.perf_counter() - start
    for ex_id in dict.fromkeys(g.ex_id for g in grades):
        c = coverage([g for g in grades if g.ex_id == ex_id])
        print(f"{ex_id:14} {c['specific']:4}/{c['wrong']:<4} specific  verdicts {c['verdicts_right']}/{c['mutants']}  "
              f"wrong causes {c['wrong_cause']}")
    c = coverage(grades)
    print(f"mutants {c['mutants']}, verdicts right {c['verdicts_right']} of {c['mutants']}")
    print(f"wrong {c['wrong']}: specific hint on the first gradient to fix {c['specific']} "
          f"({100 * c['specific'] / max(1, c['wrong']):.1f}%); of the {c['raised']} that raise: {c['raised_specific']}")
    print(f"mutants with a hint naming a cause they do not have: {c['wrong_cause']}")
    missed = Counter(g.kind for g in grades if not g.passed and not g.specific)
    print("missed by kind:", dict(missed.most_common()))
    print(f"{seconds:.1f} s, {1000 * seconds / max(1, len(grades)):.0f} ms per mutant")
    for g in grades:
        if ("wrong" in args.show and g.wrong) or ("missed" in args.show and not g.passed and not g.specific):
            wrong = f" WRONG: {g.wrong[:2]}" if g.wrong else ""
            print(f"- {g.ex_id} [{g.kind}] {g.what} -> d{g.first}: {g.hint!r}{wrong}")


if __name__ == "__main__":
    main()
