"""Feedback end to end, with real workers: the report's hints, the screen and the Markdown summary.

Each grading starts a worker (about 1.5 s), so single-file mistakes on
different exercises share one submission: the exercises are graded
independently, so each file is still judged on its own.
"""

import contextlib
import itertools
import json
import re
from io import StringIO

import pytest
from rich.console import Console

from conftest import MAX_SCORE, ROOT, SECRET, SOLUTIONS, VARIANTS
from test_diagnosis_helpers import FEEDBACK, FEEDBACK_MANIFEST, assert_feedback, feedback_expect
from grader import cli
from grader.course.mistakes import CATALOGUE
from grader.feedback.labels import LABELS
from grader.outputs.markdown import escape, render_markdown
from grader.outputs.terminal import print_report

BY_ID = {e.id: e for e in CATALOGUE}
ANSI = re.compile(r"\x1b\[")

# Passes every public case (vocab 27, 13, 20) and fails only where the vocabulary has 8 rows (a hidden case).
HIDDEN_ONLY_CE = (SOLUTIONS / "cross_entropy.py").read_text().replace(
    "    return dlogits", "    if logits.shape[1] == 8:\n        dlogits = dlogits * 2\n    return dlogits")


def _bundles():
    by_file = {}
    for v in FEEDBACK_MANIFEST:
        by_file.setdefault(v["replaces"], []).append(v)
    return [[v for v in row if v is not None] for row in itertools.zip_longest(*by_file.values())]


@pytest.fixture(scope="module")
def graded_with_secret(tmp_path_factory):
    """examples/mistakes-like submission, graded by the CLI with the hidden cases, --markdown and the screen."""
    folder = tmp_path_factory.mktemp("mistakes")
    sources = {
        "atomic.py": (VARIANTS / "atomic__dcounts_missing_branch.py").read_text(),
        "batchnorm.py": (VARIANTS / "batchnorm__no_bessel.py").read_text(),
        "embedding.py": (VARIANTS / "embedding__no_accumulate.py").read_text(),
        "cross_entropy.py": HIDDEN_ONLY_CE,
        "train.py": (VARIANTS / "train__tanh_hpreact.py").read_text(),
    }
    for name, text in sources.items():
        (folder / name).write_text(text)
    secret = folder.parent / "secret.txt"
    secret.write_text(SECRET)
    out, md = folder.parent / "report.json", folder.parent / "summary.md"
    mp = pytest.MonkeyPatch()
    mp.setenv("NO_COLOR", "1")
    mp.setenv("COLUMNS", "80")
    screen = StringIO()
    try:
        with contextlib.redirect_stdout(screen):
            code = cli.main(["grade", str(folder), "--config", str(ROOT / "grading.yaml"), "--secret-file",
                             str(secret), "--out", str(out), "--markdown", str(md)])
    finally:
        mp.undo()
    assert code == 0
    return {"report": json.loads(out.read_text()), "json": out.read_text(), "markdown": md.read_text(),
            "screen": screen.getvalue()}


def _check(report, ex_id, name):
    ex = next(e for e in report["exercises"] if e["id"] == ex_id)
    return next(c for c in ex["checks"] if c["name"] == name)


def test_report_names_each_mistake(graded_with_secret):
    report = graded_with_secret["report"]
    assert report["hidden_cases"] == "included"
    assert _check(report, "atomic", "counts")["hint"] == BY_ID["dcounts_missing_branch"].message
    assert _check(report, "atomic", "C")["hint"].startswith("First fix dcounts:")
    assert _check(report, "atomic", "logprobs")["hint"] is None
    assert _check(report, "batchnorm", "hprebn")["hint"] == BY_ID["no_bessel"].hint("hprebn")
    assert _check(report, "embedding", "C")["hint"] == BY_ID["dC_no_accumulate"].message
    for name in ("C", "W1", "bngain", "bnbias"):
        assert _check(report, "train", name)["hint"] == BY_ID["tanh_hpreact"].hint(name)
    assert _check(report, "train", "trajectory")["hint"] == "The SGD steps use your gradients: fix dbngain first."
    ce = _check(report, "cross_entropy", "logits")
    assert ce["status"] == "partial" and ce["passed_cases"] == 6
    assert ce["hint"].startswith("Passes every public case but not 1 of the 3 hidden ones "
                                 "(likely cause: off by a constant factor)")


def test_hidden_cases_reveal_no_values_or_shapes(graded_with_secret, all_cases):
    report = graded_with_secret["report"]
    labels = {f"likely cause: {x}" for x in LABELS.values()} | {f"likely cause: {e.title}" for e in CATALOGUE}
    for ex in report["exercises"]:
        for check in ex["checks"]:
            for case in check["cases"]:
                if case["visibility"] == "hidden":
                    assert all(case[k] is None for k in ("exact", "max_abs_diff", "rel_err", "expected_shape",
                                                         "got_shape", "note"))
                    assert case["hint"] is None or case["hint"] in labels, case["hint"]
    # the only failure of dlogits is on the hidden case with 8 rows: nothing of it may show anywhere
    hidden = next(c for c in all_cases if c.spec.hidden and c.ints["vocab_size"] == 8)
    ref = hidden.references["cross_entropy"]["logits"]
    secrets = [f"{float(ref.abs().max()):.1e}", f"({hidden.ints['n']}, 8)", f"n = {hidden.ints['n']}",
               f"n={hidden.ints['n']} "]
    ce_md = graded_with_secret["markdown"].split("### Exercise 2")[1].split("###")[0]
    ce_screen = graded_with_secret["screen"].split("Exercise 2:")[1].split("Exercise 3:")[0]
    ce_json = json.dumps(next(e for e in report["exercises"] if e["id"] == "cross_entropy"))
    for text in (ce_md, ce_screen, ce_json):
        for secret in secrets:
            assert secret not in text, (secret, text)
    assert "Passes every public case but not 1 of the 3 hidden ones" in ce_screen


def test_screen_is_readable_without_colour_at_80_columns(graded_with_secret):
    screen = graded_with_secret["screen"]
    assert not ANSI.search(screen)
    lines = screen.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert not [line for line in lines if line != line.rstrip()]
    assert "  First to fix: dcounts" in lines
    row = next(line for line in lines if line.lstrip().startswith("FAIL dcounts "))
    assert re.match(r"  FAIL dcounts\s+no\s+no\s+\d\.\de[+-]\d\d\s+\(32, 27\)\s+0/7\s+0/1\.54$", row), row
    below = lines[lines.index(row) + 1]
    assert below.startswith("       dcounts misses a branch")
    assert re.search(r"^\s+ok\s+dlogprobs\s+yes\s+yes\s+0\.0e\+00", screen, re.M)
    assert "Summary" in lines and any(line.startswith("Total: ") for line in lines)


def test_markdown_summary(graded_with_secret):
    md = graded_with_secret["markdown"]
    assert md.startswith("## Backprop Ninja: ")
    assert "| | gradient | exact | approx | maxdiff | shape | cases | points | hint |" in md
    assert "> **First to fix: `dcounts`**: " + escape(BY_ID["dcounts_missing_branch"].message) in md
    assert "| ❌ | `dcounts` | no | no |" in md
    assert escape(BY_ID["dC_no_accumulate"].message) in md
    for line in md.splitlines():  # every table row keeps its columns (hints are escaped)
        if line.startswith("| ✅ | `") or line.startswith("| ❌ | `"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 10, line


def test_correct_submission_gets_no_hints(submission, grade_it):
    report = grade_it(submission())
    assert report.score == report.max_score
    for ex in report.exercises:
        assert all(c.hint is None and all(r.hint is None for r in c.cases) for c in ex.checks)
    console = Console(file=StringIO(), width=80, no_color=True)
    print_report(report, console)
    screen = console.file.getvalue()
    assert "FAIL" not in screen and "First to fix" not in screen
    assert f"Total: {MAX_SCORE:g} / {MAX_SCORE:g}" in screen
    assert "❌" not in render_markdown(report)


@pytest.mark.parametrize("bundle", _bundles()[:3], ids=lambda b: "+".join(v["file"][:-3] for v in b))
def test_mistakes_in_other_styles_through_the_worker(bundle, submission, grade_it):
    report = grade_it(submission(replace={v["replaces"]: (FEEDBACK / v["file"]).read_text() for v in bundle}))
    for v in bundle:
        expect, root = feedback_expect(v)
        assert_feedback(report.exercise(v["replaces"].removesuffix(".py")), expect, root, None)


# --- hint levels: nudge, local rule, worked expression ---------------------------------------


def test_hints_escalate_in_the_report(graded_with_secret):
    report = graded_with_secret["report"]
    counts = _check(report, "atomic", "counts")
    assert counts["hint_levels"][0] == counts["hint"] and len(counts["hint_levels"]) == 3
    assert counts["hint_levels"][1].startswith("The local rule: probs = counts * counts_sum_inv")
    assert counts["hint_levels"][2] == ("The worked expression: dcounts = counts_sum_inv * dprobs; "
                                        "dcounts += torch.ones_like(counts) * dcounts_sum")
    assert _check(report, "atomic", "C")["hint_levels"] == [_check(report, "atomic", "C")["hint"]]  # a cascade
    for ex in report["exercises"]:
        for check in ex["checks"]:
            assert check["hint_levels"][:1] == ([check["hint"]] if check["hint"] else [])
            for case in check["cases"]:
                if case["visibility"] == "hidden":  # a generic label, never a level more
                    assert case["hint_levels"] == ([case["hint"]] if case["hint"] else [])


def test_screen_shows_the_first_level_and_how_to_see_more(graded_with_secret):
    screen = graded_with_secret["screen"]
    after = screen.split("  First to fix: dcounts")[1]
    assert "(2 more hints, up to the worked expression: run with --hints all, or open the HTML page)" \
        in " ".join(after.split())
    assert "The worked expression" not in screen


def test_hints_all_prints_every_level(graded_with_secret):
    from grader.report import Report

    report = Report.model_validate(graded_with_secret["report"])
    console = Console(file=StringIO(), width=80, no_color=True)
    print_report(report, console, hints="all")
    text = " ".join(console.file.getvalue().split())
    assert "2. The local rule: probs = counts * counts_sum_inv" in text
    assert "3. The worked expression: dcounts = counts_sum_inv * dprobs;" in text
    assert "--hints all" not in text


def test_markdown_hides_the_next_levels_in_details(graded_with_secret):
    md = graded_with_secret["markdown"]
    section = md.split("**More help with `dcounts`:**")[1]
    assert section.index("<details><summary>Hint 2: the local rule</summary>") < \
        section.index("<details><summary>Hint 3: the worked expression</summary>") < section.index("</details>")
    assert escape("dcounts += torch.ones_like(counts) * dcounts_sum") in section


def test_a_line_that_raises_is_explained_through_the_worker(submission, grade_it):
    source = (SOLUTIONS / "atomic.py").read_text().replace("dh = dlogits @ W2.T", "dh = dlogits @ W2")
    report = grade_it(submission({"atomic.py": source}))
    check = next(c for c in report.exercise("atomic").checks if c.name == "logprobs")
    assert "`dlogits @ W2` does not multiply (32, 27) by (64, 27)" in check.hint, check.hint
    assert "did you mean `dh = dlogits @ W2.T`?" in check.hint
    assert len(check.hint_levels) == 3
