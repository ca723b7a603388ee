"""Where a batch's time goes: seconds summed per phase, across threads (the benchmark prints them).

A mark costs two perf_counter calls and a lock, so it stays on in every run; nothing reads the
totals but `grader.batch` (into BatchResult.phases) and benchmarks/bench_batch.py.
"""

import threading
import time
from collections import Counter
from contextlib import contextmanager

_totals: Counter = Counter()
_lock = threading.Lock()


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
