"""The Gradescope autograder zip, run end to end as Gradescope runs it, in a temporary /autograder.

Gradescope unpacks the zip into /autograder/source, runs setup.sh once (as root), copies
run_autograder to /autograder/run_autograder, puts the student's files in
/autograder/submission and runs run_autograder from /autograder; it reads
/autograder/results/results.json. Here AUTOGRADER_ROOT points the scripts at a temporary
folder and GRADER_PYTHON at this venv, so setup.sh installs nothing.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import MAX_SCORE, ROOT, SECRET
from test_formats import check_gradescope_fields

MISTAKES = ROOT / "examples" / "mistakes"
PROBE = '''

def _probe():
    """Try to read the hidden-case secret the autograder holds."""
    import glob
    for path in glob.glob("/tmp/**/grader_secret", recursive=True) + [{secret_path!r}]:
        try:
            print("PROBE", path, open(path).read())
        except OSError as err:
            print("PROBE", path, "unreadable:", type(err).__name__)


_probe()
'''


def cli(*args, env=None, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("build")
    secret = folder / "secret.txt"
    secret.write_text(SECRET + "\n")
    out = folder / "autograder.zip"
    proc = cli("gradescope", "build", "--out", str(out), "--secret-file", str(secret))
    assert proc.returncode == 0, proc.stderr
    return out


def install(zip_path: Path, root: Path) -> dict:
    """Lay out /autograder as Gradescope does, and run setup.sh."""
    source = root / "source"
    source.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():  # extract, keeping the permission bits
            target = source / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            target.chmod((info.external_attr >> 16) & 0o777)
    shutil.copy(source / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "GRADER_PYTHON": sys.executable}
    env.pop("GRADER_SECRET", None)
    proc = subprocess.run(["bash", str(source / "setup.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return env


def run_autograder(root: Path, env: dict) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([str(root / "run_autograder")], capture_output=True, text=True, env=env,
                          cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads((root / "results" / "results.json").read_text())


def test_zip_has_what_gradescope_expects(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as archive:
        infos = {i.filename: i for i in archive.infolist()}
    # setup.sh and run_autograder at the root of the archive, not in a folder.
    assert {"setup.sh", "run_autograder", "grading.yaml", "grader_secret", "build.json",
            "grader-src/pyproject.toml", "grader-src/grader/cli.py"} <= set(infos)
    mode = {name: (info.external_attr >> 16) & 0o777 for name, info in infos.items()}
    assert mode["setup.sh"] & 0o111 and mode["run_autograder"] & 0o111
    assert mode["grader_secret"] == 0o600
    with zipfile.ZipFile(autograder_zip) as archive:
        setup = archive.read("setup.sh").decode()
        build = json.loads(archive.read("build.json"))
        assert archive.read("grader_secret").decode().strip() == SECRET
        assert SECRET not in setup + archive.read("run_autograder").decode() + json.dumps(build)
    assert "torch==2.13.0" in setup and "download.pytorch.org/whl/cpu" in setup
    assert build["hidden_cases"] is True and build["torch"] == "torch==2.13.0"
    assert stat.S_IMODE(autograder_zip.stat().st_mode) == 0o600  # it holds the secret


def test_build_options_and_errors(tmp_path):
    out = tmp_path / "a.zip"
    env = {"GRADER_SECRET": ""}
    proc = cli("gradescope", "build", "--out", str(out), "--torch", "torch==2.5.1", "--python", "python3.12",
               env=env)
    assert proc.returncode == 0, proc.stderr
    assert "hidden cases will not run" in proc.stderr
    with zipfile.ZipFile(out) as archive:
        assert "grader_secret" not in archive.namelist()
        setup = archive.read("setup.sh").decode()
    assert 'TORCH_SPEC:-torch==2.5.1' in setup and 'PYTHON:-python3.12' in setup
    proc = cli("gradescope", "build", "--out", str(out), "--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "config file not found" in proc.stderr


def test_run_autograder_end_to_end_with_hidden_cases(autograder_zip, tmp_path, config):
    root = tmp_path / "autograder"
    env = install(autograder_zip, root)
    secret_path = root / "source" / "grader_secret"
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    for src in MISTAKES.glob("*.py"):
        shutil.copy(src, root / "submission" / src.name)
    with open(root / "submission" / "embedding.py", "a") as fh:  # a submission that goes looking for the secret
        fh.write(PROBE.format(secret_path=str(secret_path)))

    proc, results = run_autograder(root, env)
    check_gradescope_fields(results)
    report = json.loads((root / "results" / "report.json").read_text())
    assert report["hidden_cases"] == "included"  # the secret reached the grader ...
    hidden = [t for t in results["tests"] if "hidden" in t["tags"]]
    assert hidden and {t["visibility"] for t in hidden} == {config.hidden_visibility}
    assert 0 < results["score"] < MAX_SCORE and results["score"] == pytest.approx(report["score"], abs=1e-6)
    everything = "".join(p.read_text(errors="replace") for p in (root / "results").iterdir()) + proc.stdout
    assert SECRET not in everything  # ... and went nowhere else
    # The allow list stops the probe (glob, open) before it runs; test_sandbox shows what bwrap hides from it.
    assert {(f["file"], f["pattern"]) for f in report["integrity"]} >= {("embedding.py", "open")}
    if "PROBE" in report["output"]["stdout"] and report["isolation"]["level"] == "bwrap":
        assert str(secret_path) + " unreadable" in report["output"]["stdout"]


def test_run_autograder_reports_an_unreadable_submission(autograder_zip, tmp_path):
    root = tmp_path / "autograder"
    env = install(autograder_zip, root)
    for folder, name in (("a", "atomic.py"), ("b", "train.py")):  # contract files in two folders
        (root / "submission" / folder).mkdir()
        shutil.copy(MISTAKES / name, root / "submission" / folder / name)
    _, results = run_autograder(root, env)
    check_gradescope_fields(results)
    assert results["score"] == 0 and results["tests"] == []
    assert "spread over several folders" in results["output"]
