"""A batch leaves nothing behind: no slot folder, process or file descriptor, however it ends.

Slot folders live in the temporary folder (`grader-batch-<pid>-<start>-*`): a batch stopped with
SIGTERM or SIGINT removes its own on the way out; one killed with SIGKILL cannot, so the next
batch removes every folder whose owner is gone.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, TESTS, make_submission
from grader.batch.local import WORK_PREFIX, remove_stale_work
from grader.batch.run import run_batch
from grader.sandbox import levels as sandbox

HOSTILE = TESTS / "hostile"
TIMEOUT = 2

pytestmark = pytest.mark.skipif(sys.platform != "linux" or not sandbox.level_works("bwrap"),
                                reason="batch isolation is promised under bubblewrap")


def _processes_mentioning(marker: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(cmdline.replace("\0", " ")[:200])
    return found


def _gone(marker: str, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while _processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _processes_mentioning(marker)


def _hung_course(folder: Path, count: int) -> Path:
    for i in range(count):  # every one runs into its timeout: the batch is surely midway when it is stopped
        make_submission(folder / f"s{i}", {"atomic.py": (HOSTILE / "atomic__infinite_loop.py").read_text()})
    return folder


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_stopped_batch_leaves_no_slot_folder_or_process(tmp_path, signum):
    course, work = _hung_course(tmp_path / "course", 4), tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "TMPDIR": str(work)}
    cmd = [sys.executable, "-m", "grader", "batch", str(course), "--out", str(tmp_path / "out"), "--jobs", "1",
           "--timeout", str(TIMEOUT), "--quiet", "--config", str(ROOT / "grading.yaml")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    staged = []
    while not staged and time.monotonic() < deadline and proc.poll() is None:  # a session is running
        time.sleep(0.05)
        staged = list(work.glob(f"{WORK_PREFIX}*/slot-0/submission/*"))
    assert staged, proc.stderr.read().decode()
    proc.send_signal(signum)
    code = proc.wait(timeout=60)
    assert code != 0, "the batch was not stopped midway"
    assert _gone(str(work)), "the sandboxes die with the batch"
    left = list(work.glob(f"{WORK_PREFIX}*"))
    if signum != signal.SIGKILL:
        assert code == 130 and "interrupted" in proc.stderr.read().decode()
        assert left == []
        return
    assert len(left) == 1  # nothing runs on SIGKILL: the next batch removes it
    empty = tmp_path / "empty"
    empty.mkdir()
    again = subprocess.run([sys.executable, "-m", "grader", "batch", str(empty), "--out", str(tmp_path / "out2"),
                            "--quiet", "--config", str(ROOT / "grading.yaml")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert list(work.glob(f"{WORK_PREFIX}*")) == []


def test_only_folders_whose_batch_is_gone_are_removed(tmp_path):
    alive = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-{_started(os.getpid())}-", dir=tmp_path))
    dead_pid = _a_dead_pid()
    dead = tmp_path / f"{WORK_PREFIX}{dead_pid}-12345-abcd"
    (dead / "slot-0" / "cwd").mkdir(parents=True)
    reused = tmp_path / f"{WORK_PREFIX}{os.getppid()}-1-abcd"  # a live pid, but not the process that made it
    reused.mkdir()
    other = tmp_path / "grader-batch-notes"  # not a slot folder's name: left alone
    other.mkdir()
    assert sorted(remove_stale_work(tmp_path)) == sorted([dead, reused])
    assert alive.is_dir() and other.is_dir() and not dead.exists() and not reused.exists()


def _started(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def _a_dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def test_a_finished_batch_leaves_no_descriptor_folder_or_process(tmp_path, config, monkeypatch):
    course = tmp_path / "course"
    make_submission(course / "right")
    make_submission(course / "hangs", {"batchnorm.py": (HOSTILE / "batchnorm__sleep_forever.py").read_text()})
    make_submission(course / "crashes", {"batchnorm.py": (HOSTILE / "batchnorm__segfault.py").read_text()})
    make_submission(course / "wrong", {"embedding.py": "def embedding_backward(demb, Xb, vocab_size):\n"
                                                       "    return demb.sum()\n"})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    import torch  # noqa: F401 - what importing opens once is not the batch's

    before, running = set(os.listdir("/proc/self/fd")), set(_descendants(os.getpid()))
    result = run_batch(course, tmp_path / "out", config, timeout=TIMEOUT, jobs=2, quiet=True)
    assert (result.graded, result.errors) == (4, 0)
    deadline = time.monotonic() + 10
    while set(_descendants(os.getpid())) - running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(_descendants(os.getpid())) - running == set()
    assert _processes_mentioning(str(work)) == []
    assert sorted(p.name for p in work.iterdir()) == []
    after = set(os.listdir("/proc/self/fd"))
    assert after - before == set(), {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in after - before
                                     if os.path.exists(f"/proc/self/fd/{fd}")}

    # The report files are not flushed one by one (their rows are the record): a rerun mends one cut short.
    report = tmp_path / "out" / "wrong.json"
    whole = report.read_text()
    report.write_text(whole[:100])
    (tmp_path / "out" / "right.json").unlink()
    rerun = run_batch(course, tmp_path / "out", config, timeout=TIMEOUT, jobs=2, quiet=True)
    assert (rerun.graded, rerun.skipped) == (0, 4)
    assert report.read_text() == whole and (tmp_path / "out" / "right.json").is_file()
