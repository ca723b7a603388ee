"""The student page (`grade --html`): the graph derived from the forward pass, verdicts, hints, offline, escaped.

The page is graded once (examples/mistakes: dcounts misses a branch, so
everything computed from it cascades) and opened from disk in headless
Chromium; the tests read the DOM the browser built and the requests it made.
"""

import json

import pytest

from browser import load
from conftest import ROOT, SECRET
from grader.outputs import graph as graph_module
from grader.cli import main
from grader.course.steps import STEPS
from grader.course.mlp import ATOMIC, PARAMS
from grader.course.registry import EXERCISES
from grader.course.spec import TRAJECTORY, Exercise
from grader.outputs.graph import LOSS, exercise_graph, forward_structure
from grader.outputs.html_report import first_to_fix, hints_html, render_page, verdict
from grader.report import CaseResult, CheckResult, ExerciseResult, Report


# --- the graph, derived from the forward pass ---------------------------------------------------

def test_forward_edges_are_the_backward_pass_dependencies():
    """Each tensor feeds exactly the tensors whose gradients its own gradient is computed from."""
    structure = forward_structure()
    for name in ATOMIC:
        feeds = {out for out, (_, reads) in structure.items() if name in reads and out in ATOMIC}
        assert feeds == set(STEPS[name].upstream), name
    assert structure[LOSS][1] == ("logprobs", "Yb")
    assert structure["probs"][0] == "probs = counts * counts_sum_inv"


def test_atomic_graph_has_a_node_per_forward_tensor():
    g = exercise_graph(EXERCISES["atomic"])
    assert set(g.checks) == set(ATOMIC)
    assert {n.name for n in g.nodes} == {*ATOMIC, "Xb", "Yb", LOSS}
    assert ("counts", "probs") in g.edges and ("counts", "counts_sum") in g.edges and ("Xb", "emb") in g.edges


def test_one_go_exercises_get_their_subgraph():
    ce = exercise_graph(EXERCISES["cross_entropy"])
    assert ce.checks == ["logits"]
    assert {n.name for n in ce.nodes if n.kind == "inner"} == set(ATOMIC[:ATOMIC.index("logits")])
    assert "h" not in {n.name for n in ce.nodes}  # the exercise starts at logits
    bn = exercise_graph(EXERCISES["batchnorm"])
    assert bn.checks == ["hprebn"] and bn.node("hpreact").kind == "given"
    assert {n.name for n in bn.nodes if n.kind == "inner"} == {"bnmeani", "bndiff", "bndiff2", "bnvar",
                                                                "bnvar_inv", "bnraw"}
    emb = exercise_graph(EXERCISES["embedding"])
    assert {(n.name, n.kind) for n in emb.nodes} == {("C", "check"), ("emb", "given"), ("Xb", "input")}
    train = exercise_graph(EXERCISES["train"])
    assert set(train.checks) == {*PARAMS, TRAJECTORY}
    assert {a for a, b in train.edges if b == TRAJECTORY} == set(PARAMS)


def test_a_course_exercise_gets_a_graph_too():
    mine = Exercise("var", "Variance in one go", "var.py", "var_backward", ("bnvar", "extra"),
                    ("dbnvar_inv", "bnvar"), (), True)  # two checks: a dict of gradients
    g = exercise_graph(mine)
    assert {(n.name, n.kind) for n in g.nodes} == {("bnvar", "check"), ("bnvar_inv", "given"), ("extra", "check")}
    assert g.edges == (("bnvar", "bnvar_inv"),)


# --- one graded mistake, opened in the browser ---------------------------------------------------

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    out = tmp_path_factory.mktemp("page")
    secret = out / "secret"
    secret.write_text(SECRET)
    code = main(["grade", str(ROOT / "examples" / "mistakes"), "--out", str(out / "report.json"),
                 "--html", str(out / "report.html"), "--secret-file", str(secret), "--quiet"])
    assert code == 0
    report = Report.model_validate_json((out / "report.json").read_text())
    return out, report


@pytest.fixture(scope="module")
def page(graded, tmp_path_factory):
    out, _ = graded
    return load(out / "report.html", tmp_path_factory.mktemp("chromium"))


def _nodes(dom, ex_id):
    return {e.attrs["id"].removeprefix(f"bpn-{ex_id}-node-"): e for e in dom.find_all("g", "node")
            if e.attrs.get("id", "").startswith(f"bpn-{ex_id}-node-")}


def test_cascades_are_told_apart_from_the_mistake(graded):
    _, report = graded
    ex = report.exercise("atomic")
    checks = {c.name: c for c in ex.checks}
    assert first_to_fix(ex).name == "counts"
    assert verdict(ex, checks["counts"]) == "wrong" and checks["counts"].cascade_of is None
    for name in ("norm_logits", "logits", "h", "hprebn", "C"):
        assert verdict(ex, checks[name]) == "cascade" and checks[name].cascade_of == "counts", name
    for name in ("logprobs", "probs", "counts_sum_inv", "counts_sum", "b1"):
        assert verdict(ex, checks[name]) == "right", name


def test_browser_shows_every_node_and_marks_the_first_to_fix(page):
    nodes = _nodes(page.dom, "atomic")
    assert set(nodes) == {*ATOMIC, "Xb", "Yb", LOSS}
    first = [name for name, e in nodes.items() if "first-to-fix" in e.classes()]
    assert first == ["counts"]
    assert "FIX THIS FIRST" in nodes["counts"].all_text() and "verdict-wrong" in nodes["counts"].classes()
    assert "verdict-cascade" in nodes["hpreact"].classes() and "fix dcounts first" in nodes["hpreact"].all_text()
    assert "verdict-right" in nodes["probs"].classes()
    assert "maxdiff" in nodes["counts"].all_text()  # its cmp line is on the node
    # a node links to its check, which is on the page
    links = [e.attrs.get("xlink:href") or e.attrs.get("href") for e in nodes["counts"].find_all("a")]
    assert "#bpn-atomic-counts" in links
    assert page.dom.find_all(None, "check") and any(e.attrs.get("id") == "bpn-atomic-counts"
                                                    for e in page.dom.find_all("section"))
    # the one-go exercises get their subgraphs
    assert set(_nodes(page.dom, "batchnorm")) == {"hprebn", "bnmeani", "bndiff", "bndiff2", "bnvar", "bnvar_inv",
                                                 "bnraw", "hpreact", "bngain", "bnbias"}
    assert "first-to-fix" in _nodes(page.dom, "embedding")["C"].classes()


def test_browser_shows_the_hints_and_hidden_counts_only(graded, page):
    _, report = graded
    counts = next(e for e in page.dom.find_all("section") if e.attrs.get("id") == "bpn-atomic-counts")
    hints = counts.find_all("details", "hint")
    assert hints and "level-1" in hints[0].classes()
    assert report.exercise("atomic").checks[4].hint in hints[0].all_text()
    text = counts.all_text()
    assert "Hidden cases: 0 of" in text
    hidden = [c.name for c in report.cases if c.visibility == "hidden"]
    assert hidden and not any(name in text for name in hidden)  # counts only, no hidden case named


def test_page_requests_nothing(graded, page):
    out, _ = graded
    assert page.requests == []
    html = (out / "report.html").read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not page.dom.find_all("script") and not page.dom.find_all("img") and not page.dom.find_all("link")
    for element in page.dom.iter():
        for key in ("src", "href", "xlink:href"):
            value = element.attrs.get(key)
            assert value is None or value.startswith("#"), (key, value)


def test_the_request_check_sees_a_page_that_loads_from_the_network(tmp_path):
    """The offline test above can fail: a page with remote resources shows up in the net log."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="http://example.invalid/x.png">'
                   '<link rel=stylesheet href="https://cdn.example.invalid/a.css"></body></html>')
    loaded = load(bad, tmp_path / "chromium")
    assert set(loaded.requests) == {"http://example.invalid/x.png", "https://cdn.example.invalid/a.css"}


def test_hint_levels_open_one_at_a_time(graded, tmp_path):
    _, report = graded
    report = report.model_copy(deep=True)
    check = next(c for c in report.exercise("atomic").checks if c.name == "counts")
    levels = ["Look at every place counts is used.", "A tensor used twice gets the sum of both gradients.",
              "dcounts = counts_sum_inv * dprobs + dcounts_sum"]
    check.hint_levels = levels  # what the diagnosis gives, once it has levels
    (tmp_path / "levels.html").write_text(render_page(report))
    loaded = load(tmp_path / "levels.html", tmp_path / "chromium")
    section = next(e for e in loaded.dom.find_all("section") if e.attrs.get("id") == "bpn-atomic-counts")
    one = section.find_all("details", "level-1")
    assert len(one) == 1 and "open" in one[0].attrs
    two = one[0].find_all("details", "level-2")
    assert len(two) == 1 and "open" not in two[0].attrs   # inside level 1: shown only once it is open
    three = two[0].find_all("details", "level-3")
    assert len(three) == 1 and "open" not in three[0].attrs
    for level, element in zip(levels, (one[0], two[0], three[0])):
        assert level in element.all_text()
    assert "Hint 2 of 3: the local rule" in two[0].find_all("summary")[0].all_text()


def test_a_single_hint_is_one_details():
    check = CheckResult(name="probs", score=0, max_score=1, passed_cases=0, total_cases=1, status="failed",
                        hint="only one", cases=[])
    html = hints_html(check)
    assert html.count("<details") == 1 and "only one" in html and "Hint</summary>" in html
    assert hints_html(check.model_copy(update={"hint": None})) == ""


# --- verdicts, escaping, no layout engine --------------------------------------------------------

def _check(name, status, case_status, **extra):
    case = CaseResult(case="lecture", visibility="public", passed=status == "passed", status=case_status)
    return CheckResult(name=name, score=0, max_score=1, passed_cases=int(status == "passed"), total_cases=1,
                       status=status, cases=[case], **extra)


def _exercise(checks, status="partial", **extra):
    return ExerciseResult(id="atomic", title="Exercise 1", file="atomic.py", function="backward_atomic", score=0,
                          max_score=len(checks), status=status, checks=checks, **extra)


def test_every_verdict():
    ex = _exercise([_check("logprobs", "passed", "passed"), _check("probs", "failed", "wrong_values"),
                    _check("counts_sum_inv", "failed", "wrong_values", cascade_of="probs"),
                    _check("counts_sum", "failed", "not_implemented"), _check("counts", "failed", "missing")])
    assert [verdict(ex, c) for c in ex.checks] == ["right", "wrong", "cascade", "not_attempted", "not_attempted"]
    assert first_to_fix(ex).name == "probs"
    blocked = _exercise([_check("probs", "failed", "not_allowed")], status="not_allowed")
    assert verdict(blocked, blocked.checks[0]) == "not_allowed" and first_to_fix(blocked).name == "probs"
    todo = _exercise([_check("logprobs", "passed", "passed"), _check("probs", "failed", "not_implemented")])
    assert first_to_fix(todo).name == "probs"  # nothing wrong: the next one to do
    assert first_to_fix(_exercise([_check("probs", "failed", "missing")], status="not_submitted")) is None


def _report(graded, **changes) -> Report:
    _, report = graded
    report = report.model_copy(deep=True)
    for key, value in changes.items():
        setattr(report.submission if key == "student_id" else report, key, value)
    return report


def test_student_strings_are_escaped(graded, tmp_path):
    report = _report(graded, student_id='<script>alert("id")</script>')
    ex = report.exercise("atomic")
    ex.message = '<img src=x onerror="alert(1)">'
    ex.traceback = "Traceback\n</pre><script>alert(2)</script>"
    ex.checks[4].hint = "<b onclick=alert(3)>x</b>"
    ex.checks[4].cases[0].message = "<iframe src=http://example.invalid>"
    path = tmp_path / "hostile.html"
    path.write_text(render_page(report))
    loaded = load(path, tmp_path / "chromium")
    for tag in ("script", "img", "iframe", "b"):
        assert not loaded.dom.find_all(tag), tag
    assert '<script>alert("id")</script>' in loaded.dom.all_text()  # shown as text
    assert loaded.requests == []


def test_without_dot_the_page_has_the_checks_and_a_note(graded, monkeypatch):
    monkeypatch.setattr(graph_module, "have_dot", lambda: False)
    html = render_page(_report(graded))
    assert "<svg" not in html and "Graphviz" in html
    assert 'id="bpn-atomic-counts"' in html and "fix this first" in html


def test_report_json_has_the_new_fields(graded):
    out, _ = graded
    data = json.loads((out / "report.json").read_text())
    checks = {c["name"]: c for c in data["exercises"][0]["checks"]}
    assert checks["probs"]["cascade_of"] is None and checks["h"]["cascade_of"] == "counts"
