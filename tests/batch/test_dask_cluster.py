"""`grader batch --scheduler` on a real cluster: `dask scheduler` and two `dask worker`s as separate processes.

One scenario, run once for the module (dask_cluster.py beside this file starts the processes): a batch of
every kind of submission, a hostile one among them, is graded locally, then on the cluster, whose workers
cannot see the batch folder (so submissions must travel by value). While a worker grades a slow submission
it is killed (SIGKILL, its whole process group: a machine lost); then, while the other one grades it, that
worker's process is killed too (its nanny starts a new one, which has to get the cases again). The tests
below read what happened.
"""

import collections
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ASSIGNMENTS, FIXTURES, ROOT, SECRET, SOLUTIONS, make_submission
from grader.batch.gradebook import Gradebook
from grader.batch.run import content_hash, run_batch
from grader.config import IntegrityConfig, load_config
from grader.report import Report
from grader.sandbox import levels as sandbox
from grader.submission.integrity import RULES

pytest.importorskip("dask.distributed", reason="the optional extra `dask` is not installed")
pytestmark = pytest.mark.skipif(sys.platform != "linux" or not sandbox.level_works("bwrap"),
                                reason="the workers' view of the filesystem and their grading use bubblewrap")

HOSTILE = ROOT / "tests" / "hostile"
VARIANTS = FIXTURES / "variants"
NOTEBOOKS = FIXTURES / "notebooks"
TIMEOUT = 5  # seconds per exercise: the hung submission hangs in two, long after the others are done
BOUND = 240  # seconds for anything the scenario waits for: a hang fails the test, it never blocks the suite


@dataclass
class Scenario:
    course: Path
    local: Path
    remote: Path
    totals: object = None          # the cluster run's BatchResult
    views: dict = field(default_factory=dict)       # worker name -> (cwd, sees the batch folder)
    killed: str = ""               # the worker killed mid-batch, nanny and all
    restarted: str = ""            # the worker whose process was killed next (its nanny started another)
    pids: tuple = ()               # that worker process's pid, and the pids of the workers at the end
    completed: dict = field(default_factory=dict)   # content hash -> how many times its grading task finished
    at_kill: dict = field(default_factory=dict)     # how many were done at the first kill
    kill: dict = field(default_factory=dict)        # the harness's account of the kill
    survivors: list = field(default_factory=list)   # worker names the scheduler still had after the batch
    deaths: list = field(default_factory=list)      # worker processes whose nanny saw them killed
    folders: dict = field(default_factory=dict)     # worker name -> its slot folders left, after the stop
    left: list | None = None                        # processes alive after the cluster stopped
    strays: list = field(default_factory=list)      # processes naming the cluster's folder, after it stopped
    error: str = ""
    seconds: dict = field(default_factory=dict)     # per phase, printed


class Harness:
    """dask_cluster.py in a process of its own; its JSON lines, each read within a bound."""

    def __init__(self, folder: Path, hidden: Path):
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("dask_cluster.py")), str(folder),
                                      str(hidden), "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()

    def read(self, seconds: float = 60) -> dict:
        try:
            return json.loads(self.lines.get(timeout=seconds))
        except queue.Empty:
            raise AssertionError(f"the cluster said nothing for {seconds} s") from None

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> list | None:
        """Stop the cluster; the processes it saw still alive (None: it did not say)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # its children die with it (PR_SET_PDEATHSIG)
            self.proc.wait(timeout=10)
            return None
        try:
            while True:
                last = self.read(1)
                if "left" in last and "killed" not in last:
                    return last["left"]
        except AssertionError:
            return None


def _mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry}: {cmdline}")
    return found


def _course(course: Path) -> Path:
    """Ten entries of every kind; `dan-hung`, the fourth, hangs in two exercises, so it runs when others are done."""
    spin = "def cross_entropy_backward(logits, Yb):\n    while True:\n        pass\n"
    make_submission(course / "dan-hung", {"batchnorm.py": (HOSTILE / "batchnorm__sleep_forever.py").read_text(),
                                          "cross_entropy.py": spin})
    make_submission(course / "ann")
    make_submission(course / "bo", {"embedding.py": (VARIANTS / "embedding__no_accumulate.py").read_text(),
                                    "atomic.py": (HOSTILE / "atomic__syntax_error.py").read_text()})
    make_submission(course / "cy", {"batchnorm.py": (HOSTILE / "batchnorm__os_exit.py").read_text()})
    make_submission(course / "di", drop=("train.py", "atomic.py"))
    make_submission(course / "eve", {"embedding.py": (HOSTILE / "embedding__kill_parent.py").read_text()})
    (course / "fay.ipynb").write_bytes((ASSIGNMENTS / "backprop_ninja.ipynb").read_bytes())  # the stubs
    (course / "gus.zip").write_bytes(b"not a zip")
    with zipfile.ZipFile(course / "hal.zip", "w") as archive:
        for source in sorted(SOLUTIONS.glob("*.py")):
            archive.write(source, source.name)
    (course / "ivy.ipynb").write_bytes((NOTEBOOKS / "lecture_mistakes.ipynb").read_bytes())  # the lecture's own
    return course / "dan-hung"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask-cluster")
    hung = _course(root / "course")
    # The scan widened to everything (as tests/test_hostile.py does): the hostile one meets the sandbox itself.
    config = load_config(ROOT / "grading.yaml")
    config = config.model_copy(update={"integrity": IntegrityConfig(allow=list(RULES))})
    found = Scenario(course=root / "course", local=root / "local", remote=root / "remote")

    from dask.distributed import Client

    started = time.monotonic()

    def lap(phase: str) -> None:  # for a slow or failed run: where the time went
        found.seconds[phase] = round(time.monotonic() - started - sum(found.seconds.values()), 1)

    cluster = Harness(root / "cluster", hidden=root)  # it starts while the local run grades
    try:
        run_batch(found.course, found.local, config, secret=SECRET, timeout=TIMEOUT, jobs=2, quiet=True)
        lap("local run")
        address = cluster.read()["scheduler"]
        with Client(address, timeout=30) as watch:
            watch.wait_for_workers(2, timeout=120)
            lap("cluster up")
            names = {w["name"]: a for a, w in watch.scheduler_info(n_workers=-1)["workers"].items()}
            seen = watch.run(lambda path: (os.getcwd(), os.path.exists(path)), str(found.course))
            found.views = {n: tuple(seen[a]) for n, a in names.items()}
            # The batch runs in a thread: this one kills the worker that holds the hung submission.
            done: queue.Queue = queue.Queue()

            def batch():
                try:
                    done.put(run_batch(found.course, found.remote, config, secret=SECRET, timeout=TIMEOUT,
                                       quiet=True, scheduler=address))
                except BaseException as err:  # noqa: BLE001 - reported by the tests
                    done.put(err)

            threading.Thread(target=batch, daemon=True).start()
            slow = f"-{content_hash(hung)[:12]}"

            def on_scheduler(dask_scheduler):  # the grading tasks done so far, and where each other one is
                done = {str(t[0]) for t in dask_scheduler.transition_log if t[2] == "memory"}
                return {str(k): ("done" if str(k) in done else ts.state, ts.processing_on.name if ts.processing_on
                                 else None) for k, ts in dask_scheduler.tasks.items() if str(k).startswith("grade-")
                        } | {k: ("done", None) for k in done if k.startswith("grade-")}

            def until(ready, what: str):
                deadline = time.monotonic() + BOUND
                while not (got := ready(watch.run_on_scheduler(on_scheduler))):
                    assert time.monotonic() < deadline and done.empty(), f"never happened: {what}"
                    time.sleep(0.05)
                return got

            def holder(tasks):
                [(state, on)] = [v for k, v in tasks.items() if k.endswith(slow)]
                assert state != "done", ("the hung submission was done before its worker was seen running it alone "
                                         "with every result let go")
                return on if state == "processing" else None

            def alone(name) -> bool:
                """Whether worker `name` runs the hung submission only and holds no result not yet let go.

                Killed then, it loses no finished grade (nothing else can finish there for seconds), so that
                no submission is graded to the end twice unless the batch failed to let go of a result.
                """
                [address] = [a for a, w in watch.scheduler_info(n_workers=-1)["workers"].items() if w["name"] == name]
                running, held = watch.run(lambda dask_worker: (
                    [str(ts.key) for ts in dask_worker.state.executing],
                    [str(k) for k in dask_worker.data if str(k).startswith("grade-")]), workers=[address])[address]
                return len(running) == 1 and running[0].endswith(slow) and not held

            # A machine lost: the worker grading the hung submission, nanny and all, once another one is done.
            found.killed = until(lambda t: any(s == "done" for s, _ in t.values()) and (on := holder(t)) and alone(on)
                                 and on, "the hung submission running alone on a worker while another was done")
            found.at_kill = {"finished": sum(s == "done" for s, _ in watch.run_on_scheduler(on_scheduler).values())}
            lap("until the first kill")
            cluster.send(f"kill {found.killed}")
            found.kill = cluster.read(60)
            lap("first kill")
            # Then the last worker's process (its nanny starts a new one), the only one holding the cases.
            found.restarted = until(lambda t: (on := holder(t)) not in (None, found.killed) and alone(on) and on,
                                    "the hung submission running alone on the other worker")
            [old] = watch.run(os.getpid, workers=[a for a, w in watch.scheduler_info(n_workers=-1)["workers"].items()
                                                 if w["name"] == found.restarted]).values()
            os.kill(old, signal.SIGKILL)
            lap("until the second kill")
            outcome = done.get(timeout=BOUND)
            lap("rest of the batch")
            if isinstance(outcome, BaseException):
                raise outcome
            found.totals = outcome
            found.survivors = sorted(w["name"] for w in watch.scheduler_info(n_workers=-1)["workers"].values())
            found.pids = (old, list(watch.run(os.getpid).values()))
            found.completed = watch.run_on_scheduler(lambda dask_scheduler: collections.Counter(
                str(t[0]).rsplit("-", 1)[-1] for t in dask_scheduler.transition_log
                if str(t[0]).startswith("grade-") and t[2] == "memory"))
    except Exception as err:  # noqa: BLE001 - every test then says what broke
        found.error = f"{type(err).__name__}: {err}"
    finally:
        found.left = cluster.stop()
        found.strays = _mentioning(str(root / "cluster"))
        logs = "".join(p.read_text(errors="replace") for p in (root / "cluster").glob("w*/log.txt"))
        found.deaths = [int(pid) for pid in re.findall(r"Worker process (\d+) was killed", logs)]
        found.folders = {w.name: len(list(w.glob("grader-dask-*"))) for w in (root / "cluster").glob("w*")}
        lap("stop")
        print("seconds per phase:", found.seconds)
    return found


def _book(out):
    with Gradebook(out) as book:
        return {row.name: (row.status, row.score, row.exercises, row.message) for row in book.rows()}


def test_the_scenario_ran(scenario):
    assert not scenario.error


def test_the_gradebook_equals_a_local_runs_with_a_worker_killed_midway(scenario):
    assert not scenario.error
    assert scenario.at_kill["finished"] >= 1 and scenario.kill["killed"] == scenario.killed
    local = _book(scenario.local)
    assert len(local) == 10 and local["ann"][1] == local["hal"][1] == 100 and local["gus"][0] == "unreadable"
    assert 0 < local["ivy"][1] < 100
    assert local["dan-hung"][0] == "graded" and local["dan-hung"][1] == 70  # all but the two that hung
    assert _book(scenario.remote) == local  # no row lost, none twice (names are unique), the same grades
    # and no submission graded to the end twice: each task finished once (its result let go at once, so the
    # workers lost later did not hold it), the killed attempts never did
    graded = {content_hash(p)[:12] for p in scenario.course.iterdir() if p.name != "gus.zip"}  # not unreadable
    assert scenario.completed == {h: 1 for h in graded}
    totals = scenario.totals
    assert (totals.total, totals.graded, totals.unreadable, totals.errors) == (10, 9, 1, 0)
    assert sorted(p.name for p in scenario.remote.glob("*.json")) == \
        sorted(p.name for p in scenario.local.glob("*.json"))


def test_the_killed_workers_submissions_were_graded_elsewhere(scenario):
    assert not scenario.error
    other = ({"w0", "w1"} - {scenario.killed}).pop()
    assert scenario.restarted == other and scenario.survivors == [other]  # the only worker left graded them
    assert scenario.kill["pids"] and scenario.kill["left"] == []  # its sandboxes died with it


def test_the_batch_survives_losing_every_worker_that_held_the_cases(scenario):
    assert not scenario.error
    old, now = scenario.pids
    assert now and old not in now  # a new worker process graded the rest, from cases it had to fetch again


def test_each_worker_grades_in_the_same_sandbox_as_a_local_batch(scenario):
    assert not scenario.error
    for path in scenario.local.glob("*.json"):
        local, remote = (Report.model_validate_json(p.read_text()) for p in (path, scenario.remote / path.name))
        assert remote.isolation.level == "bwrap" and remote.isolation == local.isolation, path.name
        # the same verdict for every check, the hostile one's included
        assert [(e.id, e.status, e.message, [(c.name, c.score) for c in e.checks]) for e in remote.exercises] == \
            [(e.id, e.status, e.message, [(c.name, c.score) for c in e.checks]) for e in local.exercises]
    hostile = Report.model_validate_json((scenario.remote / "eve.json").read_text())
    attacked = hostile.exercise("embedding")
    assert attacked.score == 0 and "the grader is still alive" in attacked.message
    assert all(e.score == e.max_score for e in hostile.exercises if e.id != "embedding")
    # It tried to kill its parent, its group and every process it could: no worker process died but the one
    # the test killed (the nannies log each death), and the scheduler lived on.
    assert scenario.deaths == [scenario.pids[0]]


def test_workers_never_saw_the_batch_folder(scenario):
    assert not scenario.error
    assert scenario.course.is_dir()
    for name, (cwd, sees) in scenario.views.items():
        assert not sees and Path(cwd).name == name


def test_no_process_outlives_the_cluster(scenario):
    assert scenario.left == [] and scenario.strays == []


def test_a_workers_folders_go_with_it(scenario):
    assert not scenario.error
    # A worker process stopped by a signal (the harness stops all with SIGTERM) leaves its slot folder; the
    # restarted worker's new process swept its killed one's, so only its own can be left; the machine lost
    # keeps its one until a worker starts there again.
    assert scenario.folders[scenario.restarted] <= 1 and scenario.folders[scenario.killed] == 1
