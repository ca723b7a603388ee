"""A batch's grading process holds a bounded number of finished runs, however slow scoring is next to the slots."""

import threading
import time
from pathlib import Path

from grader.batch import local
from grader.batch.jobs import Entry


class FakeSlot:
    def close(self) -> None:
        pass


def fake_slots(cls, roots, *args):
    return [FakeSlot() for _ in roots]


def test_the_slots_wait_for_scoring_instead_of_piling_up_runs(monkeypatch, config):
    """Wrong answers take scoring longer than the slots take to run them: a run (about 1 MB of answers) waits
    in its slot, and at most one per slot waits in line, instead of every finished run of the course."""
    import grader.pipeline
    import grader.sandbox.slot

    jobs, count = 2, 40
    lock, state = threading.Lock(), {"ran": 0, "scored": 0, "most": 0}

    def run_entry(entry, *args, **kwargs):
        with lock:
            state["ran"] += 1
            state["most"] = max(state["most"], state["ran"] - state["scored"])
        return entry

    def finish_entry(result):
        time.sleep(0.01)  # diagnosis: slower than a run here
        with lock:
            state["scored"] += 1
        return result

    monkeypatch.setattr(grader.sandbox.slot.Slot, "open_all", classmethod(fake_slots))
    monkeypatch.setattr(grader.pipeline, "build_cases", lambda *a: [])
    monkeypatch.setattr(local, "run_entry", run_entry)
    monkeypatch.setattr(local, "finish_entry", finish_entry)
    todo = [Entry(name=f"s{i:02d}", path=Path(f"s{i:02d}"), content_hash="c") for i in range(count)]
    graded = list(local.grade_locally(todo, config, None, 1.0, "process", jobs))
    assert sorted(e.name for e in graded) == [e.name for e in todo]  # every one, once
    # in line (one per slot), in each slot's hand, and the one being scored: never the course
    assert state["most"] <= 2 * jobs + 1


def test_an_interrupted_batch_leaves_no_slot_waiting_to_hand_over(monkeypatch, config):
    import grader.pipeline
    import grader.sandbox.slot

    monkeypatch.setattr(grader.sandbox.slot.Slot, "open_all", classmethod(fake_slots))
    monkeypatch.setattr(grader.pipeline, "build_cases", lambda *a: [])
    monkeypatch.setattr(local, "run_entry", lambda entry, *a, **k: entry)
    monkeypatch.setattr(local, "finish_entry", lambda result: result)
    todo = [Entry(name=f"s{i:02d}", path=Path(f"s{i:02d}"), content_hash="c") for i in range(40)]
    before = threading.active_count()
    results = local.grade_locally(todo, config, None, 1.0, "process", 2)
    next(results)  # the caller stops after one: the slots are ahead, their queue full
    started = time.monotonic()
    results.close()
    assert time.monotonic() - started < 2  # no slot thread blocked on a full queue
    assert threading.active_count() == before
