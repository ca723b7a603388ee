"""The README's "Adding an exercise" walk-through, followed to the letter in a temporary folder.

Every file the section shows (a line `` `mycourse/PATH`: `` above a fenced block) is written as
shown, then the section's commands run as typed. So the README cannot drift from what works, and
the new exercise touches nothing under grader/.
"""

import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT
from grader.report import Report

FILE_BLOCK = re.compile(r"^`(mycourse/[^`]+)`:\n\n```\w*\n(.*?)^```$", re.M | re.S)
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```$", re.M | re.S)


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Adding an exercise\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def grader(*args, cwd):
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The folder built from the README, after the section's commands ran: (folder, commands run)."""
    root = tmp_path_factory.mktemp("walkthrough")
    files = FILE_BLOCK.findall(section())
    assert {path for path, _ in files} >= {"mycourse/tanh_exercise.py", "mycourse/grading.yaml",
                                           "mycourse/solutions/tanh.py"}
    for path, body in files:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(body)
    commands = []
    for block in BASH_BLOCK.findall(section()):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == "grader" and "--config" in argv and "mycourse/grading.yaml" in argv:
                commands.append(argv[1:])
    assert commands, "the walk-through shows no grader command"
    release = next(c for c in commands if c[:1] == ["release"] and "--check" not in c)  # the README's first step
    done = grader(*release, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root, commands


def run_shown(course, first_args, *extra):
    """Run the README's command that starts with `first_args`, as shown (plus `extra`); its result."""
    root, commands = course
    argv = next(c for c in commands if c[:len(first_args)] == first_args)
    return grader(*argv, *extra, cwd=root), argv


def test_release_writes_the_stub(course):
    root, _ = course
    stub = (root / "mycourse" / "assignments" / "tanh.py").read_text()
    assert "    dx = None  # TODO\n" in stub and "1 - out**2" not in stub
    checked, _ = run_shown(course, ["release", "--config", "mycourse/grading.yaml", "--check"])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _grade(course, target, tmp_path):
    """The README's `grader grade TARGET ...` command, with --out to read its report."""
    out = tmp_path / "report.json"
    done, _ = run_shown(course, ["grade", target], "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    return Report.model_validate_json(out.read_text())


def test_the_solution_scores_full_marks(course, tmp_path):
    report = _grade(course, "mycourse/solutions", tmp_path)
    assert [e.id for e in report.exercises] == ["tanh"]
    assert report.score == report.max_score == 10


def test_the_stub_scores_zero_as_not_implemented(course, tmp_path):
    report = _grade(course, "mycourse/assignments", tmp_path)
    assert report.score == 0 and report.max_score == 10
    ex = report.exercise("tanh")
    assert ex.status == "failed" and "not implemented" in ex.message, ex.message
    assert {case.status for check in ex.checks for case in check.cases} == {"not_implemented"}


def test_the_mistake_gets_its_hint(course, tmp_path):
    report = _grade(course, "mycourse/mistakes/no_chain_rule", tmp_path)
    (check,) = report.exercise("tanh").checks
    assert report.score == 0
    assert all("the chain rule multiplies it" in case.hint for case in check.cases if case.visibility == "public")


def test_the_walkthrough_needs_nothing_under_grader(course):
    from grader.course.registry import BUILT_IN

    assert "tanh" not in {ex.id for ex in BUILT_IN}
    assert not (ROOT / "grader" / "course" / "exercises" / "tanh.py").exists()
