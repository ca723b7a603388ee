"""A cache of cases whose exact answers already passed every check in this process: their results, not compared again.

Most of a course hands in answers that are right to the last bit, and the same bits again and again (there
are a few ways to compute each gradient): decoding and comparing them again would give the same results.
A case's results depend on its exercise, the case, the tolerance and steps, the worker's notes and its
answers' bytes, so a result is reused only when all of these are the same (the bytes compared whole).
Kept within PASSED_MAX_BYTES of answers, the least recently used evicted first: the few answers most of a
course shares stay, while answers handed in once (another rounding of a right formula, common in a real
course) pass through without the cache growing for the whole batch.
"""

import json
from collections import OrderedDict

from grader.report import CaseResult

PASSED_MAX_BYTES = 4 << 20  # about 180 cases' answers (and ~3 MB of their results)
_PASSED: OrderedDict[tuple, tuple] = OrderedDict()
_PASSED_BYTES = [0]  # the answers' bytes kept


def clear() -> None:
    _PASSED.clear()
    _PASSED_BYTES[0] = 0


def case_key(exercise, config, case, meta: dict, blob: bytes) -> tuple:
    """What a case's results depend on besides the whole of its answers' bytes (compared on a hit)."""
    verdicts = json.dumps([meta.get("notes"), meta.get("trajectory")], sort_keys=True, default=str)
    return exercise.id, id(case), config.tolerance, config.train.steps, verdicts, len(blob), blob[-64:]


def before(key: tuple, exercise, case, blob: bytes) -> dict[str, CaseResult] | None:
    """Copies of the results of these exact answers if they passed before (else None)."""
    entry = _PASSED.get(key)
    if entry is None or entry[0] is not case or entry[1] is not exercise or entry[2] != blob:
        return None
    _PASSED.move_to_end(key)
    return {check: result.model_copy() for check, result in entry[3].items()}  # fields are replaced, never mutated


def remember(key: tuple, exercise, case, blob: bytes, results: dict[str, CaseResult]) -> None:
    """Keep a case's results if every check passed."""
    if not all(r.passed for r in results.values()) or key in _PASSED:
        return
    _PASSED[key] = (case, exercise, blob, {c: r.model_copy() for c, r in results.items()})
    _PASSED_BYTES[0] += len(blob)
    while _PASSED_BYTES[0] > PASSED_MAX_BYTES:  # the least recently used go first
        _PASSED_BYTES[0] -= len(_PASSED.popitem(last=False)[1][2])
