"""`grader grade`'s worker started on the entry point's first lines (grader.sandbox.prestart).

It starts from a memo of the last grade's level and limits; the grade adopts it only when they are exactly what it
would start. Every test runs the real `grader grade` command with a private TMPDIR and cache folder, and checks
what the worker really ran with (its address-space limit, read by the submission from /proc), which worker ran
(the phase marks), and that nothing is left behind: no workspace, no process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.sandbox import prestart

from conftest import ROOT, make_submission

# Prints the worker's address-space limit (in MiB) from the exercise child; the policy below allows `open`.
PROBE = '''def cross_entropy_backward(logits, Yb):
    with open("/proc/self/limits") as fh:
        line = next(line for line in fh if line.startswith("Max address space"))
    print("RLIMIT_AS_MIB", int(line.split()[3]) >> 20)
    return None
'''


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A policy with a 3000 MiB worker (not the packaged 4096) that lets the probe open files, and the probe."""
    tmp = tmp_path_factory.mktemp("prestart")
    text = (ROOT / "grading.yaml").read_text()
    text = text.replace("  allow: []", '  allow: ["open"]').replace("memory_mb: 4096", "memory_mb: 3000")
    assert '"open"' in text and "memory_mb: 3000" in text
    (tmp / "grading.yaml").write_text(text)
    return tmp / "grading.yaml", make_submission(tmp / "probe", replace={"cross_entropy.py": PROBE})


def grade(tmp_path, config, submission, memo=None, extra=(), phases=True, env_extra=None):
    """One `grader grade` (the console script's entry point) in its own TMPDIR; `memo`: the launch memo to leave
    in its cache folder first. (returncode, report or None, phase labels, TMPDIR)."""
    tmpdir, cache = tmp_path / "tmpdir", tmp_path / "cache"
    tmpdir.mkdir(exist_ok=True)
    cache.mkdir(mode=0o700, exist_ok=True)
    if memo is not None:
        (cache / f"{prestart.MEMO}.json").write_text(json.dumps(memo))
    log, out = tmp_path / "phases.log", tmp_path / "report.json"
    log.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GRADER_SECRET", "GRADER_PHASES", "GRADER_NO_PRESTART")}
    env.update(TMPDIR=str(tmpdir), **({"GRADER_PHASES": str(log)} if phases else {}), **(env_extra or {}))
    code = "import sys; from grader.__main__ import main; sys.argv[0] = 'grader'; main()"
    proc = subprocess.run([sys.executable, "-c", code, "grade", str(submission), "--config", str(config),
                           "--quiet", "--out", str(out), "--cache-dir", str(cache), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    labels = [line.split(" ", 1)[1] for line in log.read_text().splitlines()] if log.exists() else []
    report = json.loads(out.read_text()) if out.exists() else None
    return proc, report, labels, tmpdir


def worker_limit(report) -> int:
    [limit] = {int(line.split()[1]) for line in report["output"]["stdout"].splitlines()  # one line per public case
               if line.startswith("RLIMIT_AS_MIB")}
    return limit


def prestarted(labels) -> bool:
    """Whether the worker that ran was the prestarted one (started before the grader's own imports)."""
    adopted = "prestarted worker adopted" in labels
    assert adopted != ("worker started" in labels)  # one worker ran: the adopted one or the grade's own
    if adopted:
        assert labels.index("worker prestarted") < labels.index("grader imported")
    return adopted


def nothing_left(tmpdir: Path) -> None:
    assert list(tmpdir.iterdir()) == []  # no workspace: the prestarted one and the grade's own are gone
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            assert str(tmpdir).encode() not in cmdline, f"a process of the grade is still running: {proc.name}"


def test_the_first_grade_leaves_a_memo_the_second_starts_from(tmp_path, course):
    config, submission = course
    proc, report, labels, tmpdir = grade(tmp_path, config, submission)
    assert proc.returncode == 0, proc.stderr
    assert not prestarted(labels)  # no memo yet: the grade started its worker itself
    assert worker_limit(report) == 3000
    memo = json.loads((tmp_path / "cache" / f"{prestart.MEMO}.json").read_text())
    assert memo["limits"]["memory_mb"] == 3000 and memo["level"] == report["isolation"]["level"]
    nothing_left(tmpdir)

    proc, again, labels, tmpdir = grade(tmp_path, config, submission)
    assert proc.returncode == 0, proc.stderr
    assert prestarted(labels)
    assert worker_limit(again) == 3000  # the policy's limit, as the grade would have started it
    assert again["score"] == report["score"] and again["isolation"] == report["isolation"]
    nothing_left(tmpdir)


@pytest.mark.parametrize("change", ["memory_mb", "level"])
def test_a_worker_started_otherwise_is_never_used(tmp_path, course, change):
    """A memo with other limits or another level (a changed policy, `--isolation`, a forged file): that worker is
    killed unused and the grade's own worker runs with the policy's limits."""
    config, submission = course
    proc, report, _, _ = grade(tmp_path, config, submission, phases=False)  # writes the true memo
    memo = json.loads((tmp_path / "cache" / f"{prestart.MEMO}.json").read_text())
    if change == "memory_mb":
        memo["limits"]["memory_mb"] = 16384  # looser than the policy
    else:
        memo["level"] = "process" if memo["level"] != "process" else "unshare"
    proc, again, labels, tmpdir = grade(tmp_path, config, submission, memo=memo)
    assert proc.returncode == 0, proc.stderr
    assert labels[1] == "worker prestarted" and not prestarted(labels)  # killed; the grade started its own
    assert worker_limit(again) == 3000
    assert again["isolation"]["level"] == report["isolation"]["level"]
    assert again["score"] == report["score"]
    nothing_left(tmpdir)
    # The memo now says what this grade started.
    assert json.loads((tmp_path / "cache" / f"{prestart.MEMO}.json").read_text())["limits"]["memory_mb"] == 3000


@pytest.mark.parametrize("memo", ["not json", {"level": "bwrap"}, {"level": "x", "limits": {"memory_mb": "a"}},
                                  {"level": "../bwrap", "limits": {"memory_mb": 1}}, []])
def test_a_damaged_memo_only_means_no_prestart(tmp_path, course, memo):
    config, submission = course
    (tmp_path / "cache").mkdir(mode=0o700)
    (tmp_path / "cache" / f"{prestart.MEMO}.json").write_text(memo if isinstance(memo, str) else json.dumps(memo))
    proc, report, labels, tmpdir = grade(tmp_path, config, submission)
    assert proc.returncode == 0, proc.stderr
    assert not prestarted(labels) and worker_limit(report) == 3000
    nothing_left(tmpdir)


def test_grader_no_prestart_turns_it_off(tmp_path, course):
    config, submission = course
    grade(tmp_path, config, submission, phases=False)  # the memo
    proc, report, labels, tmpdir = grade(tmp_path, config, submission, env_extra={"GRADER_NO_PRESTART": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "worker prestarted" not in labels and not prestarted(labels) and worker_limit(report) == 3000
    nothing_left(tmpdir)


def test_no_cache_reads_and_writes_no_memo(tmp_path, course):
    config, submission = course
    grade(tmp_path, config, submission, phases=False)
    memo_file = tmp_path / "cache" / f"{prestart.MEMO}.json"
    memo_file.unlink()
    proc, report, labels, tmpdir = grade(tmp_path, config, submission, extra=["--no-cache"])
    assert proc.returncode == 0, proc.stderr
    assert not prestarted(labels) and not memo_file.exists()
    nothing_left(tmpdir)


@pytest.mark.parametrize("how", ["missing submission", "bad option", "help"])
def test_a_grade_that_stops_before_its_worker_leaves_nothing(tmp_path, course, how):
    """The prestarted worker of a grade that never runs one (an error, `--help`) is killed and its workspace
    removed, whichever way the command ends."""
    config, submission = course
    grade(tmp_path, config, submission, phases=False)  # the memo: the next grade prestarts
    target = tmp_path / "nowhere" if how == "missing submission" else submission
    extra = {"missing submission": [], "bad option": ["--timeout", "-3"], "help": ["--help"]}[how]
    proc, report, labels, tmpdir = grade(tmp_path, config, target, extra=extra)
    assert labels[:2] == ["python started", "worker prestarted"]
    assert proc.returncode == (0 if how == "help" else 2), proc.stderr
    assert report is None
    nothing_left(tmpdir)
