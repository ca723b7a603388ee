"""`grader batch`: a mixed course graded at once, row by row the same as `grader grade` alone.

One batch of correct, wrong, hung, broken, unreadable and hostile submissions
(plus a notebook, a .zip and a name full of HTML) is graded once for the
module; its rows are checked against grading each submission on its own,
then the gradebook's promises: reruns skip unchanged work (and are fast), a
config change or --regrade grades again, a batch killed with SIGKILL
resumes without losing or repeating a row, and a fork server that dies is
replaced.
"""

import gc
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import ASSIGNMENTS, FIXTURES, MAX_SCORE, POINTS, ROOT, SECRET, SOLUTIONS, TESTS, make_submission
from grader.sandbox import levels as sandbox
from grader.batch.run import run_batch
from grader.cli import main as cli_main
from grader.config import load_config
from grader.pipeline import grade
from grader.batch.gradebook import Gradebook

HOSTILE = TESTS / "hostile"
VARIANTS = FIXTURES / "variants"
TIMEOUT = 2
HTML_NAME = '<img src=x onerror="alert(1)"> & co'  # a folder name may hold anything but a slash

pytestmark = pytest.mark.skipif(sys.platform != "linux" or not sandbox.level_works("bwrap"),
                                reason="batch isolation is promised under bubblewrap")


def build_course(folder: Path) -> Path:
    """Every kind of submission a course brings, one per entry."""
    folder.mkdir(parents=True, exist_ok=True)
    make_submission(folder / "alice")                                          # correct
    shutil.copytree(ROOT / "examples" / "mistakes", folder / "bob")            # typical mistakes
    make_submission(folder / "dave", {"atomic.py": (HOSTILE / "atomic__infinite_loop.py").read_text()})  # hangs
    make_submission(folder / "erin", {"batchnorm.py": (HOSTILE / "atomic__syntax_error.py").read_text(),
                                      "embedding.py": (VARIANTS / "embedding__no_accumulate.py").read_text()})
    make_submission(folder / "gina", {f"{name.split('__')[0]}.py": (HOSTILE / name).read_text() for name in (
        "embedding__kill_parent.py", "cross_entropy__multiprocessing.py", "batchnorm__forged_frames.py",
        "atomic__huge_stdout.py", "train__exec.py")})                          # hostile
    make_submission(folder / HTML_NAME, drop=("train.py",))
    with zipfile.ZipFile(folder / "carol.zip", "w") as archive:                # a .zip, one variant wrong
        for src in SOLUTIONS.glob("*.py"):
            wrong = VARIANTS / "cross_entropy__no_1_over_n.py"
            archive.writestr(f"carol/{src.name}", (wrong if src.name == "cross_entropy.py" else src).read_text())
    (folder / "frank.zip").write_bytes(b"this is not a zip file")              # unreadable
    shutil.copy(ASSIGNMENTS / "backprop_ninja.ipynb", folder / "henry.ipynb")  # the untouched notebook
    (folder / "notes.txt").write_text("not a submission")
    return folder


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch")
    course = build_course(tmp / "course")
    secret_file = tmp / "secret.txt"
    secret_file.write_text(SECRET)
    out = tmp / "out"
    args = ["batch", str(course), "--out", str(out), "--jobs", "2", "--timeout", str(TIMEOUT), "--quiet",
            "--config", str(ROOT / "grading.yaml"), "--secret-file", str(secret_file)]
    started, thresholds = time.monotonic(), gc.get_threshold()
    assert cli_main(args) == 0
    return {"course": course, "out": out, "args": args, "seconds": time.monotonic() - started, "tmp": tmp,
            "secret_file": secret_file, "gc": (thresholds, gc.get_threshold())}


def test_the_batch_gives_back_the_garbage_collector_as_it_found_it(batch):
    before, after = batch["gc"]  # it collects less often while it runs (grader.batch.local)
    assert after == before


def _rows(out: Path) -> dict:
    with Gradebook(out) as book:
        return {row.name: row for row in book.rows()}


def test_every_row_matches_grading_the_submission_alone(batch, config, all_cases):
    rows = _rows(batch["out"])
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin", "frank", "gina", "henry", HTML_NAME}
    for name, row in rows.items():
        entry = next(p for p in batch["course"].iterdir() if p.name == name or p.stem == name)
        if name == "frank":
            assert row.status == "unreadable" and "not a readable zip" in row.message
            assert not (batch["out"] / "frank.json").exists()
            continue
        assert row.status == "graded", (name, row.message)
        alone = grade(entry, config, cases=all_cases, timeout=TIMEOUT)
        written = json.loads((batch["out"] / f"{name}.json").read_text())
        assert written["score"] == row.score == alone.score, name
        assert row.exercises == {e.id: e.score for e in alone.exercises}, name
        assert [(e["id"], e["status"]) for e in written["exercises"]] == [(e.id, e.status) for e in alone.exercises]
        assert written["hidden_cases"] == "included" and written["isolation"]["level"] == "bwrap"
        assert written["submission"]["student_id"] == name
    assert rows["alice"].score == MAX_SCORE and rows["carol"].score < MAX_SCORE
    assert {e["id"]: e["status"] for e in json.loads((batch["out"] / "dave.json").read_text())["exercises"]}[
        "atomic"] == "timeout"


def test_the_gradebook_csv_and_the_summary_are_written(batch, config):
    lines = (batch["out"] / "gradebook.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["name", "score", "max_score"]
    assert header[3:8] == list(config.exercises) and header[8] == "status"
    assert len(lines) == 1 + 9
    assert any(line.startswith("frank,0,100,") and ",unreadable," in line for line in lines)
    html = (batch["out"] / "summary.html").read_text()
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; co" in html and HTML_NAME not in html
    assert (batch["out"] / "summary.md").is_file()


def test_a_rerun_skips_everything_unchanged_and_is_fast(batch):
    before = _rows(batch["out"])
    started = time.monotonic()
    result = run_batch(batch["course"], batch["out"], load_config(ROOT / "grading.yaml"), secret=SECRET,
                       timeout=TIMEOUT, jobs=2, quiet=True)
    seconds = time.monotonic() - started
    assert result.skipped == 9 and result.graded == 0 and result.total == 9
    assert seconds < 0.3 * batch["seconds"], (seconds, batch["seconds"])
    assert {n: r.graded_at for n, r in _rows(batch["out"]).items()} == {n: r.graded_at for n, r in before.items()}


def test_changes_are_graded_again(tmp_path):
    course = tmp_path / "course"
    make_submission(course / "a")
    make_submission(course / "b", drop=("train.py",))
    make_submission(course / "c", {"embedding.py": (VARIANTS / "embedding__no_accumulate.py").read_text()})
    out = tmp_path / "out"
    config = load_config(ROOT / "grading.yaml")
    first = run_batch(course, out, config, timeout=TIMEOUT, quiet=True)
    assert first.graded == 3
    # The student fixes one submission: only that one is graded again.
    shutil.copy(SOLUTIONS / "embedding.py", course / "c" / "embedding.py")
    second = run_batch(course, out, config, timeout=TIMEOUT, quiet=True)
    assert (second.graded, second.skipped) == (1, 2) and _rows(out)["c"].score == MAX_SCORE
    # Another policy (points), another secret (hidden cases) or --regrade: everything again.
    data = yaml.safe_load((ROOT / "grading.yaml").read_text())
    data["exercises"]["train"]["points"] = 30
    changed = config.model_validate(data)
    third = run_batch(course, out, changed, timeout=TIMEOUT, quiet=True)
    assert third.graded == 3 and _rows(out)["a"].max_score == 110
    assert _rows(out)["a"].config_hash == changed.fingerprint() != config.fingerprint()
    assert run_batch(course, out, changed, timeout=TIMEOUT, quiet=True, secret=SECRET).graded == 3
    assert run_batch(course, out, changed, timeout=TIMEOUT, quiet=True, secret=SECRET).graded == 0
    assert run_batch(course, out, changed, timeout=TIMEOUT, quiet=True, secret=SECRET, regrade=True).graded == 3
    # A late policy changes the export, never a grade.
    late = changed.model_validate({**data, "late": {"deadline": "2000-01-01T00:00:00Z", "penalty_per_day": 0.1}})
    result = run_batch(course, out, late, timeout=TIMEOUT, quiet=True, secret=SECRET)
    assert result.graded == 0 and "yes" in (out / "gradebook.csv").read_text()


def _stray(marker: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(cmdline.replace("\0", " ")[:200])
    return found


def test_a_batch_killed_with_sigkill_resumes_without_losing_or_repeating_a_row(tmp_path):
    course = tmp_path / "course"
    for name in "abcdefg":
        make_submission(course / name)
    make_submission(course / "h", {"atomic.py": (HOSTILE / "atomic__infinite_loop.py").read_text()})
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "-m", "grader", "batch", str(course), "--out", str(out), "--jobs", "1", "--timeout",
           str(TIMEOUT), "--quiet", "--config", str(ROOT / "grading.yaml")]
    env = {**os.environ, "TMPDIR": str(work)}  # the fork servers' folders: find their processes by it
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    committed = 0
    while committed < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
        if (out / "gradebook.sqlite").exists():
            try:
                with sqlite3.connect(out / "gradebook.sqlite", timeout=5) as db:
                    committed = db.execute("SELECT count(*) FROM submissions").fetchone()[0]
            except sqlite3.OperationalError:
                pass  # the schema is being created
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert committed >= 3, proc.stderr.read().decode()
    before = _rows(out)
    assert 3 <= len(before) < 8, "the batch was not killed midway"
    deadline = time.monotonic() + 10
    while _stray(str(work)) and time.monotonic() < deadline:  # the sandboxes die with the batch
        time.sleep(0.1)
    assert not _stray(str(work))

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = _rows(out)
    assert sorted(after) == list("abcdefgh")
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        assert db.execute("SELECT count(*), count(DISTINCT name) FROM submissions").fetchone() == (8, 8)
    for name, row in before.items():  # finished before the kill: kept, not graded again
        assert after[name].graded_at == row.graded_at and after[name].report == row.report
    assert all(after[n].score == MAX_SCORE for n in "abcdefg") and after["h"].score < MAX_SCORE
    assert sorted(p.name for p in out.glob("*.json")) == sorted(f"{n}.json" for n in "abcdefgh")


def test_a_fork_server_that_dies_is_replaced(tmp_path, config, public_cases):
    from grader.sandbox.slot import Slot

    slot = Slot(tmp_path / "slot", "bwrap", config)
    try:
        first = grade(SOLUTIONS, config, cases=public_cases, slot=slot)
        os.killpg(slot.proc.pid, signal.SIGKILL)
        slot.proc.wait()
        again = grade(SOLUTIONS, config, cases=public_cases, slot=slot)
        assert first.score == again.score == MAX_SCORE and slot.starts == 2
        assert list((tmp_path / "slot" / "submission").iterdir()) == []  # nothing of the last one stays
    finally:
        slot.close()


@pytest.mark.parametrize("level", [pytest.param(level, marks=pytest.mark.skipif(
    not sandbox.level_works(level), reason=f"{level} does not work here")) for level in ("unshare", "process")])
def test_the_weaker_levels_grade_a_batch_alike(tmp_path, level, config):
    course = tmp_path / "course"
    make_submission(course / "a")
    make_submission(course / "b", {"embedding.py": (VARIANTS / "embedding__no_accumulate.py").read_text()})
    result = run_batch(course, tmp_path / "out", config, isolation=level, timeout=TIMEOUT, quiet=True)
    assert result.graded == 2
    rows = _rows(tmp_path / "out")
    assert rows["a"].score == MAX_SCORE and rows["b"].exercises["embedding"] < POINTS["embedding"]
    assert json.loads(rows["a"].report)["isolation"]["level"] == level


def test_the_command_line_reports_progress_and_counts(tmp_path, capfd):
    course = tmp_path / "course"
    make_submission(course / "ann")
    (course / "bo.zip").write_bytes(b"not a zip")
    (course / "notes.txt").write_text("")
    code = cli_main(["batch", str(course), "--out", str(tmp_path / "out"), "--config", str(ROOT / "grading.yaml"),
                     "--timeout", str(TIMEOUT)])
    captured = capfd.readouterr()
    assert code == 0
    assert "2 submissions: 1 graded, 0 unchanged (skipped), 1 unreadable, 0 grader errors" in captured.out
    assert "ignored (not a folder, .zip or .ipynb): notes.txt" in captured.out
    assert "2/2" in captured.err and "1 graded, 1 unreadable" in captured.err  # the progress bar's counts


def test_a_grader_failure_costs_one_row_and_is_retried_by_the_next_run(tmp_path, config, monkeypatch):
    import grader.pipeline

    course = tmp_path / "course"
    make_submission(course / "ann")
    make_submission(course / "bo")
    original = grader.pipeline.score_run

    def broken(run):
        if run.student_id == "bo":
            raise RuntimeError("a bug in the grader")
        return original(run)

    monkeypatch.setattr(grader.pipeline, "score_run", broken)
    first = run_batch(course, tmp_path / "out", config, timeout=TIMEOUT, quiet=True)
    assert (first.graded, first.errors) == (1, 1)
    rows = _rows(tmp_path / "out")
    assert rows["bo"].status == "error" and "a bug in the grader" in rows["bo"].message and rows["ann"].score == MAX_SCORE
    monkeypatch.setattr(grader.pipeline, "score_run", original)
    second = run_batch(course, tmp_path / "out", config, timeout=TIMEOUT, quiet=True)
    assert (second.graded, second.skipped) == (1, 1) and _rows(tmp_path / "out")["bo"].score == MAX_SCORE
