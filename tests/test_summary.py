"""The instructor summary: self-contained HTML with charts, the same tables in Markdown, student text escaped."""

import re
from html.parser import HTMLParser

import pytest

from conftest import ROOT
from grader.exercises import ATOMIC
from grader.gradebook import Row
from grader.summary import render_html, render_markdown, summarize, write_summary

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
    from grader.grading import grade

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
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no network, no CDN
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
