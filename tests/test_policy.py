"""Which grading policy applies: --config, else ./grading.yaml, else the one packaged with the grader."""

import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from conftest import MAX_SCORE, ROOT, SOLUTIONS
from grader.config import PACKAGED_SOURCE, ConfigError, find_config, packaged_policy
from grader.report import Report


def test_the_packaged_policy_is_the_top_level_grading_yaml():
    assert packaged_policy().read_bytes() == (ROOT / "grading.yaml").read_bytes(), (
        "grader/grading.yaml must be a copy of the top-level grading.yaml: cp grading.yaml grader/")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "grading.yaml" in declared["grader"]


def test_lookup_order(tmp_path):
    packaged = find_config(None, cwd=tmp_path)
    assert packaged.source.startswith(PACKAGED_SOURCE) and str(tmp_path) in packaged.source
    assert packaged.fingerprint() == find_config(ROOT / "grading.yaml").fingerprint()

    local = tmp_path / "grading.yaml"
    local.write_text((ROOT / "grading.yaml").read_text().replace("timeout: 30 ", "timeout: 12 "))
    here = find_config(None, cwd=tmp_path)
    assert here.timeout == 12 and here.source == str(local.resolve())

    given = find_config(str(ROOT / "grading.yaml"), cwd=tmp_path)  # --config wins over the current folder
    assert given.timeout == 30 and given.source == str((ROOT / "grading.yaml").resolve())
    with pytest.raises(ConfigError, match="config file not found"):
        find_config(tmp_path / "missing.yaml", cwd=tmp_path)


def _env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GRADER_SECRET"))}


@pytest.fixture(scope="module")
def empty_folder_grade(tmp_path_factory):
    """`grader grade SUB` from a folder without grading.yaml, as a student who installed the grader runs it."""
    home = tmp_path_factory.mktemp("anywhere")
    sub = home / "my-work"
    shutil.copytree(SOLUTIONS, sub)
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", "my-work", "--quiet"], cwd=home,
                          capture_output=True, text=True, timeout=300, env=_env())
    return proc, home


def test_grade_from_a_folder_without_grading_yaml(empty_folder_grade):
    proc, home = empty_folder_grade
    assert proc.returncode == 0, proc.stderr
    report = Report.model_validate_json((home / "report.json").read_text())
    assert report.config_source.startswith(PACKAGED_SOURCE)
    assert any(note.startswith("Grading policy: the course policy packaged") for note in report.notes)
    assert report.score == report.max_score == MAX_SCORE


def test_grade_with_a_missing_config_still_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(SOLUTIONS), "--config", "nope.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 2 and "config file not found: nope.yaml" in proc.stderr
    assert not (tmp_path / "report.json").exists()


def test_pytest_plugin_from_a_folder_without_grading_yaml(tmp_path):
    shutil.copytree(SOLUTIONS, tmp_path / "assignments")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "grader.outputs.pytest_plugin", "-p", "no:cacheprovider",
                           "--backprop-submission=assignments/", "--backprop-report=report.json", "-q",
                           "-k", "embedding"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "Grading policy: the course policy packaged" in proc.stdout
    report = Report.model_validate_json((tmp_path / "report.json").read_text())
    assert report.config_source.startswith(PACKAGED_SOURCE)
