"""`grader batch --scheduler`: the same gradebook from a Dask cluster as from a local run."""

import subprocess
import sys
import tempfile
import textwrap

import pytest

from conftest import MAX_SCORE, ROOT, SECRET, SOLUTIONS, make_submission
from grader.sandbox import levels as sandbox
from grader.batch.run import run_batch
from grader.batch.gradebook import Gradebook

pytest.importorskip("dask.distributed", reason="the optional extra `dask` is not installed")
pytestmark = pytest.mark.skipif(sys.platform != "linux" or not sandbox.level_works("bwrap"),
                                reason="grading runs under bubblewrap here")

HOSTILE = ROOT / "tests" / "hostile"
VARIANTS = ROOT / "tests" / "fixtures" / "variants"


# The cluster runs in a process of its own: its helper processes (multiprocessing's resource tracker)
# must not become children of the test process, where other tests look for stray processes.
CLUSTER = textwrap.dedent("""
    import sys
    from dask.distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()
""")


def _book(out):
    with Gradebook(out) as book:
        return {row.name: (row.status, row.score, row.exercises) for row in book.rows()}


def test_a_dask_cluster_fills_the_same_gradebook_as_a_local_run(tmp_path, config):
    course = tmp_path / "course"
    make_submission(course / "ann")
    make_submission(course / "bo", {"embedding.py": (VARIANTS / "embedding__no_accumulate.py").read_text(),
                                    "atomic.py": (HOSTILE / "atomic__syntax_error.py").read_text()})
    make_submission(course / "cy", {"batchnorm.py": (HOSTILE / "batchnorm__os_exit.py").read_text()})
    make_submission(course / "di", drop=("train.py", "atomic.py"))
    (course / "ed.zip").write_bytes(b"not a zip")
    local = run_batch(course, tmp_path / "local", config, secret=SECRET, timeout=5, jobs=2, quiet=True)
    assert local.graded == 4 and local.unreadable == 1

    cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, cwd=tmp_path)
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("tcp://")
        remote = run_batch(course, tmp_path / "dask", config, secret=SECRET, timeout=5, quiet=True,
                           scheduler=address)
        assert (remote.graded, remote.unreadable, remote.errors) == (4, 1, 0)
        assert run_batch(course, tmp_path / "dask", config, secret=SECRET, timeout=5, quiet=True,
                         scheduler=address).skipped == 5  # the same skipping rules
    finally:
        cluster.stdin.close()
        cluster.wait(timeout=60)
    assert _book(tmp_path / "dask") == _book(tmp_path / "local")
    assert _book(tmp_path / "local")["ann"][1] == MAX_SCORE
    assert (tmp_path / "dask" / "ann.json").is_file() and (tmp_path / "dask" / "summary.html").is_file()


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, capsys):
    from grader.cli import main as cli_main

    make_submission(tmp_path / "course" / "ann")
    code = cli_main(["batch", str(tmp_path / "course"), "--out", str(tmp_path / "out"), "--quiet",
                     "--config", str(ROOT / "grading.yaml"), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and "cannot reach the Dask scheduler" in capsys.readouterr().err


class _Recorded:
    """A finished future of the recording client below."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def release(self):
        self.value = None


class _RecordingClient:
    """Stands in for dask.distributed.Client: keeps what grade_on_dask would send, grades nothing."""

    sent: list = []

    def __init__(self, address, timeout):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args, **kwargs):
        self.sent.append((fn, args, kwargs))
        return _Recorded(args[0] if fn.__name__ == "_given" else ("error", "", "not graded: recorded only"))


def test_what_travels_to_the_workers_is_the_submissions_by_value_and_the_cases_never_the_secret(tmp_path, config,
                                                                                                  monkeypatch):
    import cloudpickle
    import dask.distributed

    from grader.batch import cluster as dask_batch
    from grader.batch.run import discover

    make_submission(tmp_path / "course" / "ann")
    (tmp_path / "course" / "ed.zip").write_bytes(b"not a zip")
    monkeypatch.setattr(dask.distributed, "Client", _RecordingClient)
    monkeypatch.setattr(dask.distributed, "as_completed", lambda futures: iter(list(futures)))
    monkeypatch.setattr(_RecordingClient, "sent", [])
    entries, _ = discover(tmp_path / "course", tmp_path / "out")
    results = {r.entry.name: r for r in dask_batch.grade_on_dask(entries, config, SECRET, 5, "auto", "inproc://x")}
    assert results["ed"].status == "unreadable" and results["ann"].status == "error"
    [(given, (cases,), _), (task, args, options)] = _RecordingClient.sent  # the unreadable one never left
    assert given is dask_batch._given and task is dask_batch.grade_task
    entry, submission, shipped_config, _, timeout, isolation, execute, version = args
    assert entry.name == "ann" and sorted(submission.files) == sorted(p.name for p in SOLUTIONS.glob("*.py"))
    assert submission.files["atomic.py"] == (SOLUTIONS / "atomic.py").read_text()  # by value: no path to read
    assert len(cases) > len(config.cases)  # hidden cases travel, with their inputs and references
    payload = cloudpickle.dumps((cases, args))
    assert SECRET.encode() not in payload and SECRET.encode("utf-16-le") not in payload
    assert options["key"].startswith("grade-") and options["pure"] is False
    # A second batch of the same submissions (another config, say) on the same scheduler: keys of its own,
    # or the scheduler would hand it the first one's results.
    list(dask_batch.grade_on_dask(entries, config, SECRET, 5, "auto", "inproc://x"))
    keys = [kw["key"] for _, _, kw in _RecordingClient.sent]
    assert len(keys) == 4 and len(set(keys)) == 4


def test_a_worker_with_another_grader_version_grades_nothing(config):
    from grader.batch import cluster as dask_batch

    with pytest.raises(RuntimeError, match="install the same version on every worker"):
        dask_batch.grade_task(None, None, config, [], 5, "auto", None, version="0.0.0-other")


def test_a_worker_without_the_requested_level_grades_nothing(config, monkeypatch, tmp_path):
    from grader.batch import cluster as dask_batch
    from grader.config import ConfigError

    monkeypatch.setattr(sandbox, "level_works", lambda level: level != "bwrap")  # a machine without bubblewrap
    monkeypatch.setattr(dask_batch, "_slot", None)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ConfigError, match="isolation level 'bwrap' does not work on this machine"):
        dask_batch.grade_task(None, None, config, [], 5, "bwrap", None)
    assert dask_batch._slot is None and list(tmp_path.iterdir()) == []  # no fork server, no folder


def test_a_worker_sweeps_the_folders_of_dead_workers_only(tmp_path, monkeypatch):
    import fcntl
    import os

    from grader.batch import cluster

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    live, dead, other = (tmp_path / f"{cluster.PREFIX}{name}" for name in ("live", "dead", "other"))
    for folder in (live, dead, other):
        (folder / "slot").mkdir(parents=True)
    held = cluster._hold(live)  # as a live worker process holds it
    os.close(cluster._hold(dead))  # as the kernel lets go of a killed one's
    (tmp_path / "unrelated").mkdir()
    try:
        cluster._sweep()
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, other.name, "unrelated"]  # `other`: no lock
        fcntl.flock(held, fcntl.LOCK_UN)  # its worker gone
        cluster._sweep()
        assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "unrelated"]
    finally:
        os.close(held)
