"""Every CI export at once from the command line (`grade --gradescope --junit --classroom`)."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, all_checks
from grader.report import Report
from test_gradescope import check_gradescope_fields

MISTAKES = ROOT / "examples" / "mistakes"


def test_all_formats_at_once_quietly_with_min_score(tmp_path):
    out = {name: tmp_path / name for name in ("r.json", "gs.json", "junit.xml", "classroom.json")}
    proc = subprocess.run(
        [sys.executable, "-m", "grader", "grade", str(MISTAKES), "--out", str(out["r.json"]),
         "--gradescope", str(out["gs.json"]), "--junit", str(out["junit.xml"]),
         "--classroom", str(out["classroom.json"]), "--min-score", "100", "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr  # below --min-score
    assert proc.stdout == "" and proc.stderr == ""  # --quiet
    report = Report.model_validate_json(out["r.json"].read_text())
    check_gradescope_fields(json.loads(out["gs.json"].read_text()))
    assert int(ET.parse(out["junit.xml"]).getroot().get("tests")) == len(all_checks(report))
    assert sum(t["score"] for t in json.loads(out["classroom.json"].read_text())["tests"]) == \
        pytest.approx(report.score, abs=1e-4)
