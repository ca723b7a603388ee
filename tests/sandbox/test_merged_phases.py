"""An exercise's hidden phase in the child that ran its public cases, only when the Zygote verified it.

The Zygote keeps a child for its hidden phase only if, seen from outside in /proc, it can no longer print
(its fds are /dev/null and its two pipes), runs no thread, and has not run since it was stopped; otherwise
a fresh quiet child grades the hidden cases. Either way the scores are right and no hidden value is printed.
The submissions here do what the static scan forbids, so it is widened (as in test_hostile.py).
"""

import os
import signal
import sys
import time

import pytest
import torch
from safetensors.torch import save

from grader.config import IntegrityConfig
from grader.sandbox.inside import channel, confine, harness
from grader.submission.integrity import RULES

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the checks read /proc")

BODY = '''
def embedding_backward(demb, Xb, vocab_size):
    {show}
    dC = torch.zeros((vocab_size, demb.shape[-1]), dtype=demb.dtype)
    dC.index_add_(0, Xb.reshape(-1), demb.reshape(-1, demb.shape[-1]))
    return dC
'''
PRINTS = "import torch\n" + BODY.format(show='print("SEEN", repr(Xb.tolist()), flush=True)')
# Keeps a copy of stdout past the pause: it undoes the child's own closing of its fds first.
KEEPS_STDOUT = ("import os\nimport torch\nimport grader.sandbox.inside.harness as _harness\n"
                "_harness._closerange = lambda low, high: None\n_OUT = os.dup(1)\n"
                + BODY.format(show='os.write(_OUT, ("SEEN " + repr(Xb.tolist()) + "\\n").encode())'))
# A thread that outlives the public cases, and would print whatever it finds later.
THREAD = ("import threading\nimport time\nimport torch\n"
          "_SEEN = []\n"
          "def _watch():\n    while True:\n        time.sleep(0.01)\n        while _SEEN:\n"
          "            print('SEEN', _SEEN.pop(), flush=True)\n"
          "threading.Thread(target=_watch, daemon=True).start()\n"
          + BODY.format(show="print('SEEN', repr(Xb.tolist()), flush=True); _SEEN.append(repr(Xb.tolist()))"))


@pytest.fixture
def lenient(config):
    return config.model_copy(update={"integrity": IntegrityConfig(allow=list(RULES))})


@pytest.mark.parametrize("source", [PRINTS, KEEPS_STDOUT, THREAD], ids=["prints", "keeps-stdout", "thread"])
def test_scores_are_right_and_hidden_values_never_printed(source, submission, grade_it, lenient, all_cases):
    report = grade_it(submission(replace={"embedding.py": source}), cases=all_cases, config=lenient, timeout=5)
    assert report.score == report.max_score, [(e.id, e.status, e.message) for e in report.exercises]
    checks = report.exercise("embedding").checks
    assert any(c.visibility == "hidden" and c.passed for check in checks for c in check.cases)
    text = report.model_dump_json()
    for case in all_cases:
        values = repr(case.inputs["Xb"].tolist())
        assert (values in text) != case.spec.hidden, case.spec.name


# --- the Zygote's checks, on children forked here ------------------------------------------------

def _pausing(before=None):
    """A forked child that runs `before`, then pauses as an exercise child does; its Paused and channel reader."""
    chan_r, chan_w = os.pipe()
    hidden_r, hidden_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(chan_r)
            os.close(hidden_w)
            if before is not None:
                before(chan_w, hidden_r)
            if harness.pause(chan_w, hidden_r):
                channel.send(chan_w, {"type": "got", "names": sorted(harness.PRELOADED.get("case.safetensors", {}))})
        finally:
            os._exit(0)
    os.close(chan_w)
    os.close(hidden_r)
    child, reader = confine.Paused(pid, chan_r, hidden_w), channel.FrameReader(chan_r)
    assert reader.read(time.monotonic() + 10) == ({"type": "ready_hidden"}, b"")
    return child, reader


def test_a_clean_child_is_sealed_then_gets_its_inputs():
    child, reader = _pausing()
    deadline = time.monotonic() + 10
    try:
        assert child.seal(reader, deadline)
        assert child.still_sealed()
        frames = [({"type": "inputs", "file": "case.safetensors"}, save({"Xb": torch.zeros(2)})), ({"type": "end"}, b"")]
        assert child.resume(frames, deadline)
        assert reader.read(deadline) == ({"type": "got", "names": ["Xb"]}, b"")
    finally:
        child.kill()


def _keeps(opened):
    """Undoes the child's own closing of its fds, then opens something."""
    def before(chan_w, hidden_r):
        harness._closerange = lambda low, high: None
        opened()
    return before


@pytest.mark.parametrize("before", [
    _keeps(lambda: os.dup(1)),                                 # a copy of stdout
    _keeps(lambda: os.open("/proc/self/status", os.O_RDONLY)),  # any other file
    lambda chan_w, hidden_r: __import__("threading").Thread(target=time.sleep, args=(30,), daemon=True).start(),
], ids=["stdout", "file", "thread"])
def test_a_child_that_could_still_print_or_run_is_not_kept(before):
    child, reader = _pausing(before)
    try:
        assert not child.seal(reader, time.monotonic() + 10)
    finally:
        child.kill()


def test_a_stopped_child_that_ran_since_is_not_trusted():
    child, reader = _pausing()
    try:
        assert child.seal(reader, time.monotonic() + 10)
        os.kill(child.pid, signal.SIGCONT)  # no child can (signals to itself only); say something did
        time.sleep(0.05)
        assert not child.still_sealed()
    finally:
        child.kill()


def test_bytes_it_wrote_to_its_own_pipe_are_caught():
    def writes_ahead(chan_w, hidden_r):
        fd = os.open(f"/proc/self/fd/{hidden_r}", os.O_WRONLY)  # a write end of its own input pipe
        os.write(fd, b"x" * 12)

    child, reader = _pausing(writes_ahead)
    try:
        assert not child.seal(reader, time.monotonic() + 10)
    finally:
        child.kill()
