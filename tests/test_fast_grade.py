"""A single grade's fast path: the worker first (without the probe), the reference cache, the phase marks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader import phases
from grader import pipeline as grading
from grader.course import refcache
from grader.sandbox import levels as sandbox
from grader.sandbox import handle as runner  # where the worker process is started
from grader.submission.load import SubmissionError

from conftest import ROOT, SECRET

needs_bwrap = pytest.mark.skipif(sys.platform != "linux" or not sandbox.level_works("bwrap"),
                                 reason="bubblewrap does not work here")


def feedback(report: dict) -> list:
    """Every message and hint of the report, per exercise, check and case."""
    said = ("message", "hint", "hint_levels", "note", "cascade_of")
    return [(e["id"], e["message"], [([c.get(k) for k in said], [[r[k] for k in said if k in r] for r in c["cases"]])
                                     for c in e["checks"]]) for e in report["exercises"]]


def verdicts(report: dict) -> dict:
    return {e["id"]: (e["score"], [(c["name"], c["status"]) for c in e["checks"]]) for e in report["exercises"]}


SUBMISSIONS = {"solutions": "solutions", "mistakes": "examples/mistakes",  # .py: every check right; some wrong
               "lecture": "tests/fixtures/notebooks/lecture_mistakes.ipynb"}     # the lecture's own notebook


@pytest.fixture(scope="module")
def cli_grades(tmp_path_factory, config, all_cases):
    """`grader grade` runs, hidden cases on, of each of SUBMISSIONS: with the default cache folder already filled
    (the solutions' grade also with GRADER_PHASES set), and with --no-cache (phases off)."""
    tmp = tmp_path_factory.mktemp("fast")
    env = {k: v for k, v in os.environ.items() if k not in ("GRADER_PHASES", "XDG_CACHE_HOME")}
    env["GRADER_SECRET"] = SECRET
    warm_env = {**env, "XDG_CACHE_HOME": str(tmp / "xdg")}
    folder = Path(warm_env["XDG_CACHE_HOME"]) / "backprop-ninja-grader"
    refcache.store(folder, refcache.cache_key(config, SECRET), all_cases, SECRET)
    cold_env = {**env, "XDG_CACHE_HOME": str(tmp / "xdg-unused")}
    out = {}
    for sub, path in SUBMISSIONS.items():
        phased = {**warm_env, "GRADER_PHASES": str(tmp / "phases.log")} if sub == "solutions" else warm_env
        for name, extra, run_env in (("warm", [], phased), ("no-cache", ["--no-cache"], cold_env)):
            proc = subprocess.run([sys.executable, "-m", "grader", "grade", path, "--quiet", "--out",
                                   str(tmp / f"{sub}-{name}.json"), *extra], cwd=ROOT, env=run_env,
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            out[sub, name] = json.loads((tmp / f"{sub}-{name}.json").read_text())
    return tmp, folder, out


@pytest.mark.parametrize("sub", SUBMISSIONS)
def test_a_grade_from_the_cache_is_the_same_grade(cli_grades, sub):
    """From the cache, a single grade writes the worker's inputs from numpy arrays and scores with torch tensors
    made from them (refcache.as_torch): the same verdicts, feedback and score as a grade that built its cases."""
    tmp, folder, reports = cli_grades
    warm, cold = reports[sub, "warm"], reports[sub, "no-cache"]
    assert warm["hidden_cases"] == cold["hidden_cases"] == "included"
    assert warm["score"] == cold["score"]
    assert (warm["score"] == warm["max_score"]) == (sub == "solutions")
    assert verdicts(warm) == verdicts(cold)
    assert [c["name"] for c in warm["cases"]] == [c["name"] for c in cold["cases"]]
    # What the student reads (messages, hints, the diagnosis of a wrong check) is the same.
    assert feedback(warm) == feedback(cold)


def test_the_phases_say_where_the_time_went(cli_grades):
    tmp, folder, _ = cli_grades
    labels = [line.split(" ", 1)[1] for line in (tmp / "phases.log").read_text().splitlines()]
    assert labels[0] == "python started" and labels[-1] == "views written"
    for label in ("worker started", "cases read from the cache", "worker said hello (torch imported)",
                  "public cases run", "exercise atomic answered", "worker finished", "report written"):
        assert label in labels
    assert "cases built" not in labels  # read, not built
    assert labels.index("worker started") < labels.index("submission read")  # the worker first
    assert "worker prestarted" not in labels  # the first grade with this cache folder: no memo to start from yet
    # The grading process imports torch only once the worker's inputs are written, while the worker runs:
    # nothing before it (reading, scanning, the cache, the inputs) waits for a torch import of its own.
    assert labels.index("inputs written") < labels.index("grading process imported torch")


def test_no_cache_writes_no_cache_and_no_phases(cli_grades):
    tmp, folder, _ = cli_grades
    assert not (tmp / "xdg-unused").exists()
    # The warm grades found their file (nothing rewritten beside it) and remembered the worker's modules and how
    # they started their worker (grader.sandbox.prestart).
    assert sorted(p.suffix for p in folder.iterdir()) == [".cache", ".json", ".json"]
    assert sorted(p.name.split(".")[0] for p in folder.glob("*.json")) == ["worker-launch", "worker-modules"]
    reports = sorted(f"{sub}-{name}.json" for sub in SUBMISSIONS for name in ("warm", "no-cache"))
    assert sorted(p.name for p in tmp.iterdir()) == sorted([*reports, "phases.log", "xdg"])


def test_phase_marks_are_off_by_default(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "GRADER_PHASES"}
    code = "import grader.phases as p; p.mark('x'); print(p._PATH)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.stdout.strip() == "None" and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(phases, "_PATH", str(tmp_path / "log"))
    phases.mark("a phase")
    assert (tmp_path / "log").read_text().split(" ", 1)[1] == "a phase\n"


@pytest.fixture
def started(monkeypatch):
    """Every worker process started, so a test can check none is left running."""
    procs, real = [], runner.start_worker

    def start(*args, **kwargs):
        procs.append(real(*args, **kwargs))
        return procs[-1]

    monkeypatch.setattr(runner, "start_worker", start)
    return procs


@needs_bwrap
def test_auto_starts_under_bubblewrap_without_the_probe(grade_it, monkeypatch, started):
    monkeypatch.setattr(grading, "choose_level", lambda level: pytest.fail("probed before starting the worker"))
    report = grade_it(ROOT / "solutions", isolation="auto")
    assert report.isolation.level == "bwrap" and report.isolation.hides_files
    assert report.score == report.max_score
    assert len(started) == 1 and started[0].returncode is not None


def test_a_worker_that_cannot_start_falls_back_to_the_probe(grade_it, monkeypatch):
    """As if bubblewrap were installed but did not work: the first worker dies before its hello."""
    starts, probes = [], []
    real = runner.start_worker

    def start(level, limits, mounts, args, pass_fds, **kwargs):
        starts.append(level)
        if len(starts) == 1:
            return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds,
                                    start_new_session=True)
        return real(level, limits, mounts, args, pass_fds, **kwargs)

    monkeypatch.setattr(grading.shutil, "which", lambda name: "/usr/bin/bwrap" if name == "bwrap" else None)
    monkeypatch.setattr(runner, "start_worker", start)
    monkeypatch.setattr(grading, "choose_level", lambda level: probes.append(level) or "process")
    report = grade_it(ROOT / "solutions", isolation="auto")
    assert starts == ["bwrap", "process"] and probes == ["auto"]
    assert report.isolation.level == "process" and not report.isolation.hides_files
    assert report.score == report.max_score and report.isolation.workers_started == 1


def test_with_nothing_to_run_the_level_is_still_probed(grade_it, tmp_path, monkeypatch):
    """No worker says hello when nothing is submitted: the report's level comes from the probe."""
    (tmp_path / "notes.txt").write_text("nothing to grade here")
    monkeypatch.setattr(grading.shutil, "which", lambda name: "/usr/bin/bwrap" if name == "bwrap" else None)
    monkeypatch.setattr(grading, "choose_level", lambda level: "process")
    report = grade_it(tmp_path, isolation="auto")
    assert report.isolation.level == "process" and report.isolation.workers_started == 0
    assert all(e.status == "not_submitted" for e in report.exercises)


def test_a_forced_level_that_does_not_work_is_still_a_clear_error(grade_it, monkeypatch):
    monkeypatch.setattr(grading.shutil, "which", lambda name: None)  # no bubblewrap: the probe runs first
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.level_works.cache_clear()
    try:
        with pytest.raises(Exception, match="isolation level 'bwrap' does not work on this machine"):
            grade_it(ROOT / "solutions", isolation="bwrap")
    finally:
        sandbox.level_works.cache_clear()


def test_an_unreadable_submission_leaves_no_worker_behind(grade_it, tmp_path, started):
    with pytest.raises(SubmissionError):
        grade_it(tmp_path / "no such folder", isolation="process")
    assert len(started) == 1 and started[0].returncode is not None  # started early, then killed and reaped
    assert not any(tmp_path.iterdir())


def test_the_worker_modules_are_remembered_and_a_planted_list_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(refcache, "_MEMOS", [])
    folder = refcache.default_folder()
    first = sandbox.worker_modules.__wrapped__()
    [memo] = folder.glob("worker-modules.*.json")
    assert tuple(json.loads(memo.read_text())) == first
    memo.write_text(json.dumps([*first, "cases"]))  # the answer key: never staged, whatever a memo says
    assert sandbox.worker_modules.__wrapped__() == first
    memo.write_text(json.dumps(["worker", "no_such_module"]))
    assert sandbox.worker_modules.__wrapped__() == first
    memo.write_text("not json")
    assert sandbox.worker_modules.__wrapped__() == first
    os.chmod(folder, 0o755)  # a folder others can reach: neither read nor written
    memo.write_text(json.dumps(["worker"]))
    assert sandbox.worker_modules.__wrapped__() == first
    assert json.loads(memo.read_text()) == ["worker"]
    os.chmod(folder, 0o700)
    refcache.memos_in(None)  # grade --no-cache: no memo read or written
    memo.unlink()
    assert sandbox.worker_modules.__wrapped__() == first
    assert list(folder.iterdir()) == []
