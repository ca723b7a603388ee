"""Every byte from the student is data, in every view.

Lone surrogates, invalid UTF-8, terminal escape sequences (clear screen,
window title, clipboard), NUL and carriage returns, a fake green
"Total: 100 / 100", Markdown and HTML that would break out of the report:
in exception messages, prints, tracebacks, file and folder names and batch
entry names. One `grader grade` with every export (colours forced) and one
`grader batch` are run once for the module; each view is then checked valid
(parsed by a real parser) and escaped.
"""

import csv
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from conftest import ASSIGNMENTS, ROOT, SOLUTIONS, TESTS
from grader.sandbox import levels as sandbox
from grader.outputs.classroom import classroom_results
from grader.outputs.gradescope import gradescope_results
from grader.outputs.junit import junit_xml
from grader.batch.gradebook import Gradebook, Row, gradebook_csv, lms_csv
from grader.outputs.markdown import code, escape, render_markdown
from grader.report import Report, write_report
from grader.safe_text import clean_tree, one_line, printable, valid
from grader.batch.summary import render_html, render_markdown as summary_markdown, summarize

HOSTILE = TESTS / "hostile"
ATTACKS = {"cross_entropy.py": "cross_entropy__lone_surrogate.py", "batchnorm.py": "batchnorm__terminal_escapes.py",
           "embedding.py": "embedding__escapes_at_import.py"}
# A folder name and an extra file name with escape sequences and bytes that are not UTF-8.
FOLDER = b"eve\x1b]0;owned\x07\x1b[2J\xff"
EXTRA = b"helper\x1b[31m\xfe.py"
STUDENT_SEQUENCES = ("\x1b[2J", "\x1b[H", "\x1b]0;", "\x1b]52;", "\x1b[1;32m", "\x07", "\x00", "\x9b", "\r",
                     "\u202e")
SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colours rich itself writes


def make_attacked(parent: Path) -> Path:
    """The solutions with three attacked exercises, in a folder whose name is itself an attack."""
    folder = os.fsencode(parent) + b"/" + FOLDER
    os.mkdir(folder)
    for src in SOLUTIONS.glob("*.py"):
        source = (HOSTILE / ATTACKS[src.name]).read_bytes() if src.name in ATTACKS else src.read_bytes()
        with open(folder + b"/" + src.name.encode(), "wb") as fh:
            fh.write(source)
    with open(folder + b"/" + EXTRA, "w") as fh:
        fh.write("X = 1\n")
    return Path(os.fsdecode(folder))


def assert_no_student_sequences(text: str, where: str) -> None:
    for seq in STUDENT_SEQUENCES:
        assert seq not in text, (where, seq)
    text.encode("utf-8")  # no lone surrogate


def assert_attacked_scores(report: dict) -> None:
    scores = {e["id"]: (e["score"], e["max_score"]) for e in report["exercises"]}
    assert scores["atomic"] == (40, 40) and scores["train"] == (20, 20)
    assert scores["cross_entropy"][0] == scores["batchnorm"][0] == scores["embedding"][0] == 0


# --------------------------------------------------------------------------- the helpers

def test_valid_escapes_lone_surrogates_visibly():
    assert valid("ok é 😀") == "ok é 😀"
    assert valid("a\ud800b\udfff") == "a\\ud800b\\udfff"
    assert valid(os.fsdecode(b"name\xff")) == "name\\xff"  # an undecodable file-name byte
    assert valid(None) == ""


def test_printable_escapes_controls_and_keeps_lines_only_when_asked():
    dirty = "a\x1b[2J\x07b\r\nc\td\x00\x9b\u202e\u2028"
    assert printable(dirty) == "a\\x1b[2J\\x07b\\x0d\\x0ac\\x09d\\x00\\x9b\\u202e\\u2028"
    assert printable(dirty, multiline=True) == "a\\x1b[2J\\x07b\nc\td\\x00\\x9b\\u202e\\u2028"
    assert printable("x\ry", multiline=True) == "x\\x0dy"  # a bare carriage return never rewrites a line
    assert one_line("  Total:\n\n100 \x1b[0m ") == "Total: 100 \\x1b[0m"
    assert clean_tree({"k\ud800": ["\x1b", ("\udcff", 1.5, None)]}, printable) == \
        {"k\\ud800": ["\\x1b", ("\\xff", 1.5, None)]}


def test_markdown_escapes_markup_html_and_fences():
    assert escape("</td><script>x</script> | **b** & ![i](u)\n## h") == \
        r"\</td\>\<script\>x\</script\> \| \*\*b\*\* \& \!\[i\](u) \#\# h"
    assert code("a`b") == "`` a`b ``" and code("x|y") == r"`x\|y`" and code("plain") == "`plain`"


# --------------------------------------------------------------------------- the report model

def test_the_report_serialises_whatever_the_strings(tmp_path):
    from grader.report import (CapturedOutput, Environment, ExerciseResult, IntegrityFinding, IsolationInfo,
                               SubmissionInfo)

    bad = "x\ud800\udcff\x1b[2J"
    report = Report(
        grader_version="0", config_version="0", config_fingerprint="f",
        submission=SubmissionInfo(path=bad, kind="folder", sha256="0" * 64, student_id=bad, files=[bad]),
        started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:00:01+00:00", duration_s=1.0,
        score=0, max_score=10, hidden_cases="not_run", cases=[], notes=[bad],
        exercises=[ExerciseResult(id="atomic", title="t", file="atomic.py", function="f", score=0, max_score=10,
                                  status="error", message=bad, traceback=bad, checks=[])],
        output=CapturedOutput(stdout=bad, stderr=bad),
        integrity=[IntegrityFinding(exercise="atomic", file=bad, line=1, pattern=bad, message=bad)],
        isolation=IsolationInfo(level="process", description="d", hides_files=False, timeout_s=1, memory_mb=1,
                                cpu_seconds=1, file_size_mb=1, open_files=1, output_bytes=1),
        environment=Environment(python="3", torch="2", platform="p", dtype="float64"))
    report.exercises[0].message = bad + "\udfff"  # changed after construction, as the notebook layer does
    write_report(report, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_bytes().decode("utf-8")  # strict: valid UTF-8
    again = Report.model_validate_json(text)
    assert again.exercises[0].message == "x\\ud800\\xff\x1b[2J\\udfff"  # the ESC is data, escaped by JSON
    assert "\x1b" not in text and "\\u001b" in text
    json.loads(report.model_dump_json())  # batch grading dumps it directly too
    for view in (render_markdown(report), junit_xml(report)):
        assert_no_student_sequences(view, view[:20])
        assert "x\\ud800\\xff\\x1b[2J" in view
    for data in (gradescope_results(report), classroom_results(report)):
        assert_no_student_sequences(json.dumps(data, ensure_ascii=False), "json")  # strict UTF-8 too
    ET.fromstring(junit_xml(report))


# --------------------------------------------------------------------------- one grade, every view

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """`grader grade` on the attacked folder with every export, colours forced on an 80-column 'terminal'."""
    tmp = tmp_path_factory.mktemp("views")
    folder = make_attacked(tmp)
    outputs = {kind: tmp / name for kind, name in (("out", "r.json"), ("junit", "j.xml"), ("gradescope", "g.json"),
                                                   ("classroom", "c.json"), ("markdown", "m.md"))}
    # The surrogate attack writes raw bytes with os.write: the scan would stop it before it runs.
    config = tmp / "grading.yaml"
    config.write_text((ROOT / "grading.yaml").read_text().replace("integrity:\n  allow: []",
                                                                  "integrity:\n  allow: ['import os']", 1))
    args = [sys.executable, "-m", "grader", "grade", os.fsencode(folder), "--config", str(config)]
    for kind, path in outputs.items():
        args += [f"--{kind}", str(path)]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "GRADER_SECRET")}
    env.update(FORCE_COLOR="1", COLUMNS="80", TERM="xterm-256color")
    proc = subprocess.run(args, capture_output=True, timeout=300, cwd=ROOT, env=env)
    return proc, {kind: path.read_bytes().decode("utf-8") for kind, path in outputs.items() if path.exists()}


def test_grade_writes_the_report_and_every_view(graded):
    proc, views = graded
    assert proc.returncode == 0, proc.stderr
    assert set(views) == {"out", "junit", "gradescope", "classroom", "markdown"}
    report = json.loads(views["out"])
    assert_attacked_scores(report)
    Report.model_validate(report)
    ce = next(e for e in report["exercises"] if e["id"] == "cross_entropy")
    assert "broken \\ud800 pair \\xff and \\udfff" in ce["checks"][0]["message"]
    assert "\\xed\\xa0\\x80" not in report["output"]["stdout"] and "\ufffd" in report["output"]["stdout"]
    assert any("helper\x1b[31m\\xfe.py" in note for note in report["notes"])  # data: JSON-escaped in the file
    assert "\x1b" not in views["out"]


def test_terminal_shows_student_text_escaped_and_never_as_the_grader_total(graded):
    proc, _ = graded
    screen = proc.stdout.decode("utf-8")
    assert SGR.search(screen)  # colours really were on
    plain = SGR.sub("", screen)
    assert "\x1b" not in plain  # every other escape sequence was the student's: none left
    assert_no_student_sequences(plain, "terminal")
    lines = plain.splitlines()
    assert [line for line in lines if line.startswith("Total:")] == ["Total: 60 / 100"]  # only the grader's
    fakes = [i for i, line in enumerate(lines) if "Total: 100 / 100" in line]
    assert fakes and all(lines[i].startswith(" ") for i in fakes)  # indented or quoted: never at the margin
    assert max(fakes) < lines.index("Total: 60 / 100")
    assert "  | Total: 100 / 100" in lines  # the student's, quoted in the traceback
    assert "\\x1b[1;32mTotal: 100 / 100\\x1b[0m" in plain
    assert "eve\\x1b]0;owned\\x07\\x1b[2J\\xff" in plain  # the folder name, escaped in the header
    assert max(len(line) for line in lines) <= 80
    assert "grader: error" not in proc.stderr.decode()


def test_markdown_keeps_no_raw_control_bytes_and_no_injected_markup(graded):
    md = graded[1]["markdown"]
    assert_no_student_sequences(md, "markdown")
    assert "<script>" not in md and "</td>" not in md
    assert not [line for line in md.splitlines() if line.startswith("## Total") or line.startswith("**Total: 100")]
    for line in md.splitlines():  # table rows keep their columns
        if line.startswith(("| ✅ | `", "| ❌ | `")):
            assert len(re.findall(r"(?<!\\)\|", line)) == 10, line
    block = md.split("### Embedding")[1].split("###")[0]
    fences = re.findall(r"^(`{3,})$", block, re.M)
    assert fences == ["`````", "````", "`````"]  # the student's ```` stays inside the longer fence


def test_junit_parses_with_a_real_xml_parser_attributes_too(graded):
    xml = graded[1]["junit"]
    root = ET.fromstring(xml)
    assert "eve\\x1b]0;owned\\x07\\x1b[2J\\xff" in root.get("name")
    files = {case.get("file") for case in root.iter("testcase")}
    assert all("\\x1b" in f and "\x1b" not in f for f in files)
    assert_no_student_sequences(xml, "junit")
    failures = [f.text for f in root.iter("failure")]
    assert any("broken \\ud800 pair" in text for text in failures)


def test_gradescope_and_classroom_are_strict_json_and_escaped(graded):
    for kind in ("gradescope", "classroom"):
        text = graded[1][kind]
        data = json.loads(text)
        strings = json.dumps(data, ensure_ascii=False)
        strings.encode("utf-8")
        assert_no_student_sequences(strings, kind)
        assert not re.search(r"(?<!\\)\\ud[89a-f]", text), kind  # no lone surrogate escape in the JSON itself
    gs = json.loads(graded[1]["gradescope"])
    assert "\\x1b[2J" in gs["output"] and gs["score"] == 60


# --------------------------------------------------------------------------- CSV and HTML views of rows

def _row(name: str, message: str = "", status: str = "graded") -> Row:
    return Row(name=name, entry=name, content_hash="h", config_hash="c", grading_key="k", grader_version="0",
               status=status, score=1.0, max_score=2.0, exercises={"atomic": 1.0}, message=message,
               graded_at="2026-01-01T00:00:00+00:00")


HOSTILE_NAMES = ["=HYPERLINK(\"http://x\")", " +cmd", "a\nb,\"c\"", "d\x1b[2J\x00e", valid("f\udcff"),
                 "<img src=x onerror=alert(1)>\u202e"]


def test_gradebook_csv_and_sqlite_take_any_name(tmp_path):
    rows = [_row(n, message=f"{n} \x1b]0;t\x07", status="unreadable") for n in HOSTILE_NAMES]
    with Gradebook(tmp_path) as book:
        book.record(_row("g\ud800"))  # a raw lone surrogate still goes in (as its escape)
        assert book.get("g\\ud800").name == "g\\ud800"
    for text in (gradebook_csv(rows, None), lms_csv(rows, None, "id")):
        parsed = list(csv.reader(io.StringIO(text)))
        assert len({len(r) for r in parsed}) == 1 and len(parsed) == len(rows) + 1
        for cells in parsed[1:]:
            assert not cells[0].startswith(("=", "+", "-", "@", " "))
            for cell in cells:
                assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202e]", cell), cell
        assert "d\\x1b[2J\\x00e" in text and "f\\xff" in text


def test_summary_html_and_markdown_escape_names_and_messages():
    rows = [_row(n, message=f"{n} \x1b[2J", status="unreadable") for n in HOSTILE_NAMES]
    summary = summarize(rows)
    for page in (render_html(summary), summary_markdown(summary)):
        assert_no_student_sequences(page, page[:10])
        assert not re.search(r"(?<!\\)<img", page)  # &lt;img in HTML, \<img in Markdown
    assert "d\\x1b[2J\\x00e" in render_html(summary)


# --------------------------------------------------------------------------- a batch of hostile entries

@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A course whose entries attack the batch itself: names, links, bombs; graded once, then rerun."""
    if sys.platform != "linux" or not sandbox.level_works("bwrap"):
        pytest.skip("batch isolation is promised under bubblewrap")
    tmp = tmp_path_factory.mktemp("course")
    course = tmp / "course"
    course.mkdir()
    shutil.copytree(SOLUTIONS, course / "alice")
    make_attacked(course)
    (course / "sneaky").symlink_to(SOLUTIONS, target_is_directory=True)      # scored 100 when followed
    (course / "sneaky2.ipynb").symlink_to(ASSIGNMENTS / "backprop_ninja.ipynb")
    with zipfile.ZipFile(course / "bomb.zip", "w") as archive:
        for i in range(1500):
            archive.writestr(f"f{i}.py", "x = 1\n")
    (course / "deep.ipynb").write_bytes(b'{"cells": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    cells = [{"cell_type": "code", "metadata": {}, "source": "x=1\n" * 2500, "outputs": [],
              "execution_count": None}] * 100
    (course / "tiny.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {},
                                                              "source": "# Exercise 1"}] + cells,
                                                   "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with open(course / "sparse.zip", "wb") as fh:
        fh.truncate(2 << 30)
    (course / "notes\x1b]0;t\x07.txt").write_text("not a submission")
    out = tmp / "out"
    cmd = [sys.executable, "-m", "grader", "batch", str(course), "--out", str(out), "--jobs", "1",
           "--timeout", "5", "--isolation", "bwrap"]
    env = {k: v for k, v in os.environ.items() if k != "GRADER_SECRET"}
    first = subprocess.run(cmd, capture_output=True, timeout=600, cwd=ROOT, env=env)
    second = subprocess.run(cmd, capture_output=True, timeout=300, cwd=ROOT, env=env)
    return first, second, out


def test_batch_grades_every_entry_and_never_follows_a_link(batch):
    first, second, out = batch
    assert first.returncode == 0, first.stderr.decode()
    db = sqlite3.connect(out / "gradebook.sqlite")
    rows = {name: (status, score, message) for name, status, score, message
            in db.execute("SELECT name, status, score, message FROM submissions")}
    eve = valid(os.fsdecode(FOLDER))
    assert rows["alice"][:2] == ("graded", 100)
    assert rows[eve][0] == "graded" and rows[eve][1] == 60
    assert_attacked_scores(json.loads((out / f"{eve}.json").read_text()))
    for name in ("sneaky", "sneaky2"):
        assert rows[name][:2] == ("unreadable", 0) and "is a symbolic link" in rows[name][2], rows[name]
    assert rows["bomb"][0] == "unreadable" and "1500 entries" in rows["bomb"][2]
    assert rows["deep"][0] == "unreadable" and "nests JSON" in rows["deep"][2]
    assert rows["tiny"][0] == "unreadable" and "top-level statements" in rows["tiny"][2]
    assert rows["sparse"][0] == "unreadable" and "larger than 64 MiB" in rows["sparse"][2]
    assert len(rows) == 8


def test_batch_views_are_escaped_and_a_rerun_survives(batch):
    first, second, out = batch
    console = (first.stdout + first.stderr).decode("utf-8")
    assert_no_student_sequences(SGR.sub("", console), "batch console")
    assert "notes\\x1b]0;t\\x07.txt" in console  # the ignored entry, escaped
    parsed = list(csv.reader(io.StringIO((out / "gradebook.csv").read_text(encoding="utf-8"))))
    assert len({len(r) for r in parsed}) == 1
    assert any(r[0] == "eve\\x1b]0;owned\\x07\\x1b[2J\\xff" for r in parsed)
    for page in ("summary.html", "summary.md"):
        assert_no_student_sequences((out / page).read_text(encoding="utf-8"), page)
    assert second.returncode == 0, second.stderr.decode()
    assert b"0 graded, 8 unchanged (skipped)" in second.stdout
