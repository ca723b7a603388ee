"""The arithmetic floor of grading one submission: the solutions' own work on every case, nothing else.

    .venv/bin/python benchmarks/compute_floor.py [--repeat 5] [--no-secret]

Runs, in this one warm process on one thread (as an exercise child does), the worker's harness over the
bundled solutions: every exercise on every case (public and, unless --no-secret, hidden ones, with a
throwaway secret), the trajectory's SGD steps included, the answers made into the bytes a child sends.
No process is forked, nothing is sent, nothing is scored. Prints one JSON line: the median CPU
milliseconds per submission, per exercise, and the number of cases. No grader, however it is built, runs
a submission's cases in less: bench_batch.py sets its batch against this floor.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(repeat: int, secret: str | None) -> dict:
    import torch

    from grader.config import find_config
    from grader.course.registry import EXERCISES
    from grader.pipeline import build_cases
    from grader.sandbox.inside import harness

    torch.set_num_threads(1)  # as in every worker (OMP_NUM_THREADS=1)
    config = find_config(None)
    torch.set_default_dtype(getattr(torch, config.dtype))
    cases = build_cases(config, secret)
    described = []
    for case in cases:
        file = f"floor-{case.spec.name}"
        harness.PRELOADED[file] = case.inputs
        largest = max(t.numel() for t in case.inputs.values())
        described.append({"name": case.spec.name, "file": file, "ints": case.ints, "hidden": case.spec.hidden,
                          "max_numel": 16 * largest + 4096})
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "solutions"))

    class Unsent(harness.Harness):
        def send(self, meta: dict, blob: bytes = b"") -> None:  # the answers' bytes are made, not sent
            pass

    plan = {"submission": "solutions", "memory_mb": config.limits.memory_mb, "file_size_mb": config.limits.file_size_mb}
    rounds = []
    for _ in range(repeat + 1):  # the first round warms up (imports, torch's lazy set-up)
        per = {}
        for ex_id, exercise in EXERCISES.items():
            started = time.process_time()
            Unsent(plan, -1).run_exercise(exercise.plan(config), described)
            per[ex_id] = (time.process_time() - started) * 1000
        rounds.append(per)
    rounds = rounds[1:]
    return {"ms_per_submission": statistics.median(sum(r.values()) for r in rounds),
            "ms_per_exercise": {ex: round(statistics.median(r[ex] for r in rounds), 2) for ex in rounds[0]},
            "cases": len(described)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-secret", action="store_true", help="public cases only")
    args = parser.parse_args()
    print(json.dumps(measure(args.repeat, None if args.no_secret else "benchmark-secret")))


if __name__ == "__main__":
    main()
