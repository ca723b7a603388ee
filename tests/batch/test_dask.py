"""`grader batch --scheduler`: the same gradebook from a Dask cluster as from a local run."""

import subprocess
import sys
import textwrap

import pytest

from conftest import MAX_SCORE, ROOT, SECRET, make_submission
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
