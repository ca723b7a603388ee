"""Where the time goes, for the benchmarks: two views of the same phases.

- `mark(label)`: a grade's timeline. Off unless the grading process's environment sets
  GRADER_PHASES to a file; each mark then appends one line `<unix time> <label>` to it
  (benchmarks/bench_grade.py). The worker's environment is scrubbed, so its phases are marked
  here as its frames arrive (hello: it has imported torch).
- `phase(name)`: a batch's totals, seconds summed per phase across threads. A mark costs two
  perf_counter calls and a lock, so it stays on; nothing reads the totals but grader.batch (into
  BatchResult.phases) and benchmarks/bench_batch.py.
"""

import os
import threading
import time
from collections import Counter
from contextlib import contextmanager

_PATH = os.environ.get("GRADER_PHASES") or None
_totals: Counter = Counter()
_lock = threading.Lock()


def mark(label: str) -> None:
    if _PATH is None:
        return
    with open(_PATH, "a", encoding="utf-8") as fh:
        fh.write(f"{time.time():.6f} {label}\n")


def add(name: str, seconds: float) -> None:
    with _lock:
        _totals[name] += seconds


@contextmanager
def phase(name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - start)


def snapshot() -> dict[str, float]:
    with _lock:
        return dict(_totals)


def since(before: dict[str, float]) -> dict[str, float]:
    """The seconds per phase added after `before` (a snapshot)."""
    now = snapshot()
    return {k: round(v - before.get(k, 0.0), 4) for k, v in now.items() if v - before.get(k, 0.0) > 0}
