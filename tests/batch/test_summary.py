"""The instructor summary: self-contained HTML with charts, the same tables in Markdown, student text escaped."""

import json
import re
from html.parser import HTMLParser

import pytest

from conftest import ROOT
from grader.course.mlp import ATOMIC
from grader.batch.gradebook import Row
from grader.batch.summary import render_html, render_markdown, summarize, write_summary

HOSTILE_NAME = '<script>alert("pwned")</script>|x'


class Collector(HTMLParser):
    """Tags, attributes and text of a document (the standard library's lenient parser)."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def rows(config, public_cases):
    from grader.pipeline import grade

    correct = grade(ROOT / "solutions", config, cases=public_cases)
    mistakes = grade(ROOT / "examples" / "mistakes", config, cases=public_cases)

    def make(name, report, **extra):
        return Row(name=name, entry=name, content_hash="c", config_hash="f", grading_key="k", grader_version="0",
                   status="graded", score=report.score, max_score=report.max_score,
                   exercises={e.id: e.score for e in report.exercises}, submitted_at="2026-03-01T00:00:00+00:00",
                   duration_s=report.duration_s, graded_at="2026-03-01T00:00:00+00:00",
                   report=report.model_dump_json(), **extra)

    return [make("ann", correct), make("bo", mistakes), make(HOSTILE_NAME, mistakes),
            Row(name="<img src=x onerror=alert(1)>", entry="x.zip", content_hash="c", config_hash="f",
                grading_key="k", grader_version="0", status="unreadable", score=0, max_score=100, exercises={},
                message="x.zip is not a readable zip file (<b>bad</b>)", graded_at="2026-03-01T00:00:00+00:00")]


def test_the_html_is_self_contained_with_charts_and_escapes_student_text(rows, tmp_path):
    path = write_summary(rows, tmp_path)
    html = path.read_text()
    parser = Collector()
    parser.feed(html)
    parser.close()
    assert "script" not in parser.tags and "img" not in parser.tags  # the names stayed text
    assert not any(name.startswith("on") for name, _ in parser.attrs)
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in html
    assert "&lt;b&gt;bad&lt;/b&gt;" in html
    assert parser.tags.count("svg") >= 3 and parser.tags.count("table") >= 4 and "style" in parser.tags
    assert "default-src 'none'" in html  # the browser may load nothing
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        '<meta http-equiv="Content-Security-Policy"', "")  # no network, no CDN
    text = " ".join(parser.text)
    for title in ("Score distribution", "Pass rate per check", "Most frequent diagnosed mistakes",
                  "Slowest submissions", "Failed submissions"):
        assert title in text
    assert (tmp_path / "summary.md").is_file()


def test_the_numbers(rows):
    summary = summarize(rows)
    assert summary.submissions == 4 and summary.graded == 3
    assert sum(summary.histogram) == 4 and summary.histogram[-1] == 1 and summary.histogram[0] == 1
    atomic = [c for c in summary.checks if c.exercise == "atomic"]
    assert [c.check for c in atomic] == list(ATOMIC)  # backward-pass order
    counts = next(c for c in atomic if c.check == "counts")
    assert (counts.passed, counts.total) == (1, 3)  # the mistakes miss a branch of dcounts
    assert summary.mistakes[0].submissions == 2  # the same two reports: each mistake seen twice
    assert not any(m.hint.startswith("First fix") for m in summary.mistakes)  # consequences, not mistakes
    assert any("Bessel" in m.hint for m in summary.mistakes)
    assert [f.what for f in summary.failures] == ["unreadable"]
    assert {name for name, _ in summary.slowest} == {"ann", "bo", HOSTILE_NAME}


def test_the_markdown_has_the_same_tables_and_cannot_be_broken_by_a_name(rows):
    summary = summarize(rows)
    markdown = render_markdown(summary)
    for title in ("## Score distribution", "## Pass rate per check", "## Most frequent diagnosed mistakes",
                  "## Slowest submissions", "## Failed submissions", "## All submissions"):
        assert title in markdown
    line = next(line for line in markdown.splitlines() if "pwned" in line and "graded" in line)
    assert line.startswith("| \\<script") and line.count(" | ") == 4  # five cells: the name's | is escaped
    assert re.search(r"(?<!\\)[<>]", markdown) is None  # every < and > escaped: no HTML gets through
    assert render_html(summary).count("<tr>") > len(summary.checks)


# --- a real batch: the class on the graph and shared wrong answers, opened in Chromium ----------

UNCATALOGUED = "    dhpreact = (1.0 - h**2) * dh"


@pytest.fixture(scope="module")
def course_batch(tmp_path_factory):
    """ann is right; bo and cy hand in the same catalogued mistakes; dee and eve the same uncatalogued
    dhpreact, written differently."""
    import shutil

    from conftest import SECRET, make_submission
    from grader.cli import main

    root = tmp_path_factory.mktemp("course")
    course = root / "course"
    make_submission(course / "ann")
    for name in ("bo", "cy"):
        shutil.copytree(ROOT / "examples" / "mistakes", course / name)
    atomic = (ROOT / "solutions" / "atomic.py").read_text()
    assert atomic.count(UNCATALOGUED + "\n") == 1
    make_submission(course / "dee", {"atomic.py": atomic.replace(
        UNCATALOGUED, "    dhpreact = (1.0 - h**2) * dh + 0.05 * h.abs() * bnraw")})
    make_submission(course / "eve", {"atomic.py": atomic.replace(
        UNCATALOGUED, "    slope = 1.0 - h * h\n    dhpreact = slope * dh + bnraw * h.abs() * 0.05")})
    secret = root / "secret"
    secret.write_text(SECRET)
    out = root / "out"
    assert main(["batch", str(course), "--out", str(out), "--config", str(ROOT / "grading.yaml"),
                 "--secret-file", str(secret), "--jobs", "2", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def course_rows(course_batch):
    from grader.batch.gradebook import Gradebook

    with Gradebook(course_batch) as book:
        return book.rows()


def test_two_copies_of_an_uncatalogued_mistake_are_grouped_and_nothing_else(course_rows):
    summary = summarize(course_rows)
    assert [(g.submissions, g.gradients) for g in summary.shared] == [(["dee", "eve"], ["atomic: dhpreact"])]
    # bo and cy share catalogued mistakes only (and their cascades); ann's right answers are never compared
    reports = {row.name: json.loads(row.report) for row in course_rows}
    for name in ("ann", "bo", "cy"):
        digests = [c["answer_digest"] for e in reports[name]["exercises"] for ch in e["checks"] for c in ch["cases"]
                   if c.get("answer_digest")]
        assert digests == [], name
    right = [c for e in reports["dee"]["exercises"] for ch in e["checks"] for c in ch["cases"] if c["passed"]]
    assert right and not any(c.get("answer_digest") for c in right)


def test_the_groups_come_from_the_hidden_cases(course_rows):
    """Equal numbers on the public cases alone are not enough when hidden cases were run."""
    rows = []
    for row in course_rows:
        report = json.loads(row.report)
        if row.name == "eve":
            for e in report["exercises"]:
                for ch in e["checks"]:
                    for c in ch["cases"]:
                        if c["visibility"] == "hidden" and c.get("answer_digest"):
                            c["answer_digest"] = "0" * 16
        rows.append(row.model_copy(update={"report": json.dumps(report)}))
    assert summarize(rows).shared == []


def test_similarity_can_be_switched_off(course_rows, monkeypatch):
    summary = summarize(course_rows, similarity=False)
    assert summary.shared == [] and not summary.similarity
    assert "switched off with --no-similarity" in render_markdown(summary)
    import grader.batch.run
    from grader.cli import main

    seen = {}

    def run_batch(*args, **kwargs):  # the command line hands the flag on; the batch itself is tested above
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(grader.batch.run, "run_batch", run_batch)
    with pytest.raises(SystemExit):
        main(["batch", str(ROOT / "examples"), "--out", "/nonexistent", "--config", str(ROOT / "grading.yaml"),
              "--no-similarity", "--quiet"])
    assert seen["similarity"] is False


def test_the_class_on_the_graph(course_rows):
    summary = summarize(course_rows)
    nodes = {(n.exercise, n.check): n for n in summary.nodes}
    counts = nodes[("atomic", "counts")]
    assert (counts.passed, counts.total, counts.first_to_fix, counts.mistake_count) == (3, 5, 2, 2)
    assert "dcounts" in counts.mistake and "branch" in counts.mistake
    hpreact = nodes[("atomic", "hpreact")]
    assert (hpreact.passed, hpreact.first_to_fix) == (1, 2)  # dee and eve break here; bo and cy upstream
    assert nodes[("atomic", "h")].first_to_fix == 0  # a cascade is never where the class breaks
    assert nodes[("atomic", "logprobs")].rate == 1.0


def test_the_summary_in_chromium(course_batch, tmp_path):
    from browser import load

    loaded = load(course_batch / "summary.html", tmp_path)
    assert loaded.requests == []
    nodes = {e.attrs["id"].removeprefix("class-atomic-node-"): e for e in loaded.dom.find_all("g", "node")
             if e.attrs.get("id", "").startswith("class-atomic-node-")}
    assert set(nodes) == {*ATOMIC, "Xb", "Yb", "loss"}
    breaks = {name for name, e in nodes.items() if "breaks" in e.classes()}
    assert breaks == {"counts", "hpreact"}
    assert "60% passed (3/5)" in nodes["counts"].all_text() and "first to fix for 2" in nodes["counts"].all_text()
    text = loaded.dom.all_text()
    assert "Where the class breaks" in text and "Shared wrong answers" in text
    shared = next(t for t in loaded.dom.find_all("table") if "the same wrong numbers for" in t.all_text())
    assert "dee, eve" in shared.all_text() and "atomic: dhpreact" in shared.all_text()
    assert "bo" not in shared.all_text().replace("the same wrong numbers for", "")


def test_an_answer_digest_names_the_numbers_not_their_noise():
    import torch

    from grader.scoring.score import answer_digest

    g = torch.Generator().manual_seed(0)
    a = torch.randn(32, 27, generator=g, dtype=torch.float64)
    assert answer_digest(a, 1.0) == answer_digest(a + 1e-13, 1.0)   # another order of the same sums
    assert answer_digest(a, 1.0) != answer_digest(a * (1 + 1e-4), 1.0)
    assert answer_digest(a, 1.0) != answer_digest(a.reshape(27, 32), 1.0)  # the shape counts too
    assert len(answer_digest(a, 1.0)) == 16


def test_a_summary_holds_one_report_at_a_time_and_sums_up_the_same(course_batch, course_rows, monkeypatch):
    """A course's reports (about 160 KB of JSON each) are read from the gradebook and let go one by one."""
    import types
    import weakref

    from grader.batch import summary_data
    from grader.batch.gradebook import Gradebook

    class Report(dict):  # a dict that can be watched
        pass

    alive, most = [0], [0]

    def loads(text):
        report = Report(json.loads(text))
        alive[0] += 1
        most[0] = max(most[0], alive[0])
        weakref.finalize(report, lambda: alive.__setitem__(0, alive[0] - 1))
        return report

    expected = summarize(course_rows).model_dump(exclude={"generated_at"})
    monkeypatch.setattr(summary_data, "json", types.SimpleNamespace(loads=loads))
    with Gradebook(course_batch) as book:
        light = book.rows(reports=False)
        streamed = summarize(light, reports=book.reports())
    assert streamed.model_dump(exclude={"generated_at"}) == expected
    assert streamed.graded >= 5 and streamed.shared and most[0] == 1


def test_passed_exercises_are_counted_without_building_their_models(course_rows, monkeypatch):
    from grader.batch import summary_data

    reports = [json.loads(r.report) for r in course_rows if r.report]

    def class_nodes():
        tally = summary_data.NodeTally()
        for report in reports:
            tally.add(report)
        return tally.nodes()

    quick = class_nodes()
    assert any(summary_data._all_passed(e) for rep in reports for e in rep["exercises"])
    monkeypatch.setattr(summary_data, "_all_passed", lambda data: False)  # every exercise through its model
    assert class_nodes() == quick
    assert not summary_data._all_passed({"id": "atomic", "status": "passed", "checks": [{"name": "h"}]})
