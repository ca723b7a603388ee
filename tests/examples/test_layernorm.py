"""The LayerNorm course (examples/layernorm/): an exercise a course adds without touching grader/.

One `grader batch` run grades every submission of the course at once (the solution, the stub, a
1% slip in dgamma and each classic mistake), so the module pays for one fork server; the
commands of the issue (`grader grade ... --config`, `grader release --config ... --check`) run
as a student or an instructor types them.
"""

import importlib.util
import shutil
import subprocess
import sys

import nbformat
import pytest
import yaml

from conftest import ROOT, SECRET
from grader.report import Report

COURSE = ROOT / "examples" / "layernorm"
CONFIG = COURSE / "grading.yaml"
GRADER = [sys.executable, "-m", "grader"]
CHECKS = ("x", "gamma", "beta")

# fixture folder under examples/layernorm/mistakes -> (the check it breaks, the misconception's id)
MISTAKES = {
    "no_mean_term": ("x", "ln_no_mean_term"),
    "no_variance_term": ("x", "ln_no_variance_term"),
    "gamma_forgotten": ("x", "ln_gamma_forgotten"),
    "dgamma_not_summed": ("gamma", "ln_dgamma_not_summed"),
    "dbeta_not_summed": ("beta", "ln_dbeta_not_summed"),
}
DGAMMA = "    dgamma = (dout * xhat).sum((0, 1))\n"


def run(*args, cwd=ROOT, timeout=300):
    return subprocess.run([*GRADER, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _definition():
    """The course's Exercise, imported by path: registering it would leak into other tests' registry."""
    spec = importlib.util.spec_from_file_location("layernorm_definition_under_test", COURSE / "layernorm_exercise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXERCISE


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every submission of the course, graded in one batch: name -> Report."""
    tmp = tmp_path_factory.mktemp("layernorm")
    subs = tmp / "submissions"
    shutil.copytree(COURSE / "solutions", subs / "solution")
    shutil.copytree(COURSE / "assignments", subs / "stub")
    slip = subs / "dgamma_1pct"
    slip.mkdir()
    solution = (COURSE / "solutions" / "layernorm.py").read_text()
    assert DGAMMA in solution
    (slip / "layernorm.py").write_text(solution.replace(DGAMMA, DGAMMA.rstrip("\n") + " * 1.01\n"))
    for name in MISTAKES:
        shutil.copytree(COURSE / "mistakes" / name, subs / name)
    out = tmp / "graded"
    secret = tmp / "hidden.secret"
    secret.write_text(SECRET)
    done = run("batch", str(subs), "--out", str(out), "--config", str(CONFIG), "--secret-file", str(secret),
               "--quiet", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    return {p.stem: Report.model_validate_json(p.read_text()) for p in out.glob("*.json")}


def checks(report):
    return {c.name: c for c in report.exercise("layernorm").checks}


def test_grade_command_gives_full_marks(tmp_path):
    out = tmp_path / "report.json"
    done = run("grade", "examples/layernorm/solutions", "--config", "examples/layernorm/grading.yaml",
               "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    report = Report.model_validate_json(out.read_text())
    assert [e.id for e in report.exercises] == ["layernorm"]
    assert report.max_score == 30 and report.score == 30
    assert [c.name for c in report.exercise("layernorm").checks] == list(CHECKS)
    assert len(report.cases) == 3


def test_batch_grades_the_solution_in_full(graded):
    report = graded["solution"]
    assert report.score == report.max_score == 30
    assert report.hidden_cases == "included"
    assert all(c.status == "passed" and c.passed_cases == c.total_cases == 5 for c in checks(report).values())


def test_a_one_percent_error_in_dgamma_loses_exactly_the_gamma_check(graded):
    report = graded["dgamma_1pct"]
    status = {name: c.status for name, c in checks(report).items()}
    assert status == {"x": "passed", "gamma": "failed", "beta": "passed"}
    assert report.score == 20
    gamma = checks(report)["gamma"]
    assert all(case.status == "wrong_values" for case in gamma.cases)
    assert gamma.hint  # a 1% error is a constant factor: the feedback names it


def test_the_stub_scores_zero_as_not_implemented(graded):
    report = graded["stub"]
    ex = report.exercise("layernorm")
    assert ex.score == 0 and report.score == 0 and report.max_score == 30
    assert ex.status == "failed" and "not implemented" in ex.message, ex.message
    assert {case.status for check in ex.checks for case in check.cases} == {"not_implemented"}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_misconception_is_named_for_the_learner(graded, mistake):
    check, entry_id = MISTAKES[mistake]
    entry = next(m for m in _definition().misconceptions if m.id == entry_id)
    by_name = checks(graded[mistake])
    assert by_name[check].status == "failed"
    public = [c for c in by_name[check].cases if c.visibility == "public"]
    hidden = [c for c in by_name[check].cases if c.visibility == "hidden"]
    assert len(public) == 3 and len(hidden) == 2
    assert {c.hint for c in public} == {entry.message}, [c.hint for c in public]
    # a hidden case names the mistake by its generic title only: no message, no values
    assert {c.hint for c in hidden} == {f"likely cause: {entry.title}"}
    assert all(c.max_abs_diff is None and c.got_shape is None for c in hidden)
    # the other gradients are right: the mistake costs its own check only
    assert all(by_name[c].status == "passed" for c in CHECKS if c != check)


def test_every_misconception_has_a_fixture():
    assert {entry for _, entry in MISTAKES.values()} == {m.id for m in _definition().misconceptions}
    assert sorted(p.name for p in (COURSE / "mistakes").iterdir()) == sorted(MISTAKES)


def test_release_check_agrees_with_the_committed_assignments():
    done = run("release", "--config", "examples/layernorm/grading.yaml", "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    stub = (COURSE / "assignments" / "layernorm.py").read_text()
    for var in ("dbeta", "dgamma", "dxhat", "dx"):
        assert f"    {var} = None  # TODO\n" in stub
    assert "BEGIN SOLUTION" not in stub and ".sum((0, 1))" not in stub


def test_release_check_notices_a_stale_stub(tmp_path):
    course = tmp_path / "layernorm"
    shutil.copytree(COURSE, course)
    stub = course / "assignments" / "layernorm.py"
    stub.write_text(stub.read_text().replace("dx = None  # TODO", "dx = None"))
    done = run("release", "--config", str(course / "grading.yaml"), "--check")
    assert done.returncode == 1 and "layernorm.py" in done.stderr


def test_no_grader_module_mentions_layernorm():
    mentions = [str(p.relative_to(ROOT)) for p in (ROOT / "grader").rglob("*")
                if p.is_file() and p.suffix in (".py", ".yaml", ".md", ".txt", ".json")
                and "layernorm" in p.read_text(errors="replace").lower()]
    assert mentions == []


def test_the_policy_is_the_courses_own():
    data = yaml.safe_load(CONFIG.read_text())
    assert data["definitions"] == ["layernorm_exercise.py"] and list(data["exercises"]) == ["layernorm"]
    assert (COURSE / data["definitions"][0]).is_file()
    assert not (ROOT / "grader" / "course" / "exercises" / "layernorm.py").exists()


def test_a_course_with_the_lectures_exercises_gets_the_lesson_and_check_cell_in_its_notebook(tmp_path):
    """The lesson and check cell are data of the definition: release puts them in the notebook."""
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    for path in [*(ROOT / "solutions").glob("*.py"), COURSE / "solutions" / "layernorm.py"]:
        shutil.copy(path, course / "solutions")
    policy = yaml.safe_load((ROOT / "grading.yaml").read_text())
    policy["definitions"] = [str(COURSE / "layernorm_exercise.py")]
    policy["exercises"]["layernorm"] = {"points": 30}
    (course / "grading.yaml").write_text(yaml.safe_dump(policy))
    done = run("release", "--config", str(course / "grading.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    cells = {c.id: c for c in nbformat.read(course / "assignments" / "backprop_ninja.ipynb", as_version=4).cells}
    assert cells["layernorm-md"].source.strip() == (COURSE / "lessons" / "layernorm.md").read_text().strip()
    assert cells["layernorm"].metadata["tags"] == ["layernorm"]
    assert "    dx = None  # TODO" in cells["layernorm"].source and "rstd * (" not in cells["layernorm"].source
    check = cells["layernorm-check"].source
    for line in (COURSE / "lessons" / "layernorm_check.py").read_text().splitlines():
        assert line.strip() in check
    assert (course / "assignments" / "layernorm.py").read_text() == (COURSE / "assignments" / "layernorm.py").read_text()
