"""Exercise 4 of the lecture's notebook (the training loop with a hand-written backward pass), graded as `train`.

The student's own loop runs for `train.steps` capped iterations on the grader's data; each step's
gradients are graded against autograd at the same parameters and batch, and the SGD trajectory.
Notebooks are built with tests/fixtures/notebooks/builder.py (the lecture's layout, written for these tests).
"""

import importlib.util
from pathlib import Path

import pytest

from grader.course.mlp import PARAMS
from grader.submission.lecture.train import find_train
from grader.submission.notebook import parse_cells
from conftest import TESTS

FIXTURES = TESTS / "fixtures" / "notebooks"
_spec = importlib.util.spec_from_file_location("notebook_builder", FIXTURES / "builder.py")
nbb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbb)

DC_LOOP = "    for k in range(Xb.shape[0]):\n      for j in range(Xb.shape[1]):\n        dC[Xb[k,j]] += demb[k,j]\n"
BACKWARD = nbb.EX4[nbb.EX4.index("    dlogits = F.softmax"):nbb.EX4.index("    lr = 0.1")]

# The starter's loop with the backward pass filled in and the update switched to the student's grads,
# keeping `loss.backward()` for comparison and the early `if i >= 100: break` (as the lecture does),
# printing every step, and drawing batches from a hard-coded training-set size.
COMPARISON = (nbb.EX4_STARTER
              .replace("  dC, dW1, db1, dW2, db2, dbngain, dbnbias = None, None, None, None, None, None, None\n"
                       "  grads = [dC, dW1, db1, dW2, db2, dbngain, dbnbias]\n",
                       "\n".join(line[2:] for line in BACKWARD.splitlines()) + "\n")
              .replace("    p.data += -lr * p.grad # the old way, with autograd's gradient\n"
                       "    #p.data += -lr * grad # the new way: TODO enable\n",
                       "    #p.data += -lr * p.grad # the old way\n    p.data += -lr * grad\n")
              .replace("  lossi.append(", "  print(f'step {i}')\n  lossi.append(")
              .replace("torch.randint(0, Xtr.shape[0],", "torch.randint(0, 182625,"))  # the lecture's Xtr size

MISTAKE = (nbb.EX4.replace(DC_LOOP, "    dC[Xb] += demb\n")                      # does not accumulate
           .replace("for i in range(max_steps):", "for i in tqdm(range(max_steps)):")
           .replace("n_embd = 10\n", "from tqdm import tqdm\nn_embd = 10\n"))       # a progress bar, not run
RAISES = nbb.EX4.replace("dC = torch.zeros_like(C)", "dC = torch.zeros_like(C_table)")  # a NameError in step 1
AUTOGRAD = nbb.EX4.replace("    dembcat = dhprebn @ W1.T\n", "    dembcat = embcat.grad\n")   # autograd's, not by hand


def notebook(ex4):
    cells = nbb.PREAMBLE + nbb.section_cells(ex4=ex4) + nbb.POSTAMBLE
    return nbb.lecture_notebook(cells=cells)


def plan_of(ex4):
    return find_train(parse_cells(notebook(ex4)))


# ---------------------------------------------------------------------------
# Finding and planning the loop (no worker)

def test_the_filled_in_loop_is_found_and_planned():
    plan = plan_of(True)
    assert plan.update == "hand" and "p.data += -lr * grad" in plan.update_text
    assert (plan.lr_name, plan.grads_name, plan.xb_name, plan.yb_name) == ("lr", "grads", "Xb", "Yb")
    assert plan.cells == [16] and plan.loop[0] > plan.unit[0]        # the for inside `with torch.no_grad():`
    assert plan.setup and plan.setup[0]["cell"] == 16 and plan.skips == []
    # Earlier cells give imports, functions and literal constants; never data, plotting or the parameters.
    ran = {e["cell"]: [e["source"].splitlines()[line - 1] for line, _ in e["run"]] for e in plan.prelude}
    assert ran == {2: ["import torch", "import torch.nn.functional as F"],
                   6: ["block_size = 3", "def build_dataset(words):", "import random"],
                   8: ["n_embd = 10", "n_hidden = 64"], 9: ["batch_size = 32"]}


def test_the_untouched_starter_is_recognised():
    plan = plan_of(nbb.EX4_STARTER)
    assert plan.update == "autograd" and "p.grad" in plan.update_text
    reasons = {plan.source.splitlines()[s.line - 1].strip(): s.reason for s in plan.skips}
    assert "loss.backward() # for comparisons; delete it later" in reasons
    assert "for p in parameters:" in reasons                          # p.grad = None, and the p.grad update
    assert [plan.source.splitlines()[s.line - 1].strip() for s in plan.setup_skips] == ["for p in parameters:"]


def test_a_hand_written_loop_wins_over_an_autograd_one():
    cells = nbb.PREAMBLE + nbb.section_cells(ex4=nbb.EX4_STARTER) + [("code", nbb.EX4)] + nbb.POSTAMBLE
    plan = find_train(parse_cells(nbb.lecture_notebook(cells=cells)))
    assert plan.update == "hand" and plan.cell == 17


def test_while_loops_and_other_spellings_of_the_update():
    loop = ("lr = 0.05\nstep = 0\nwhile step < max_steps:\n    Xb, Yb = Xtr[:32], Ytr[:32]\n"
            "    logits = model(Xb)\n    dC = 1\n    C.data -= lr * dC\n    step += 1\n")
    plan = plan_of(loop)
    assert plan.update == "hand" and plan.loop == (3, 0) and plan.lr_name == "lr"


def test_no_training_loop_means_not_in_the_notebook(config, public_cases):
    from grader.scoring import lecture_train

    assert plan_of(False) is None  # the calibration and sampling loops update no parameters
    result = lecture_train.score(None, config, public_cases, None, "lecture.ipynb")
    assert result.status == "not_submitted" and result.score == 0 and result.max_score == 20
    assert result.message.startswith("exercise 4 is not in the notebook")


# ---------------------------------------------------------------------------
# Grading (each grades once, shared by the tests below it)

@pytest.fixture(scope="module")
def graded(tmp_path_factory, config, public_cases, all_cases):
    from grader.pipeline import grade

    folder = tmp_path_factory.mktemp("ex4")
    done = {}

    def run(name, ex4, cases=public_cases):
        if name not in done:
            done[name] = grade(nbb.write(notebook(ex4), folder / f"{name}.ipynb"), config, cases=cases)
        return done[name]

    run.all_cases = all_cases
    return run


def train(report):
    return report.exercise("train")


def checks(report):
    return {c.name: c for c in train(report).checks}


def test_the_lectures_loop_filled_in_gets_full_marks(graded):
    report = graded("correct", True, cases=graded.all_cases)
    ex = train(report)
    assert ex.status == "passed" and ex.score == ex.max_score == 20, ex.message
    assert report.score == report.max_score == 90                   # exercises 1-3 and 4
    assert ex.function == "cell 16" and report.notebook.exercise_cells["train"] == [16]
    for check in ex.checks:
        assert [c.case for c in check.cases] == ["lecture", "hidden-1"] and all(c.passed for c in check.cases)
    assert checks(report)["W1"].cases[0].expected_shape == [30, 200]  # the student's own n_hidden = 200
    assert checks(report)["trajectory"].cases[0].message == f"followed autograd for {3} SGD steps"


def test_loss_backward_kept_for_comparison_and_the_loop_is_capped(graded, config):
    assert "loss.backward()" in COMPARISON and "if i >= 100:" in COMPARISON and "randint(0, 182625," in COMPARISON
    report = graded("comparison", COMPARISON)
    ex = train(report)
    assert ex.status == "passed" and ex.score == 20, ex.message
    steps = [line for line in report.output.stdout.splitlines() if line.startswith("step ")]
    assert steps == [f"step {i}" for i in range(config.train.steps)]  # max_steps = 200000, yet 3 iterations ran
    notes = " ".join(report.notebook.notes)
    assert "autograd (.backward" in notes                               # loss.backward() was skipped, not run
    assert not report.integrity                                         # and so never hit the autograd lock


def test_one_classic_mistake_fails_only_what_it_breaks(graded):
    assert "tqdm(range(max_steps))" in MISTAKE
    report = graded("mistake", MISTAKE)
    failing = {name for name, c in checks(report).items() if c.status != "passed"}
    assert failing == {"C", "trajectory"}
    assert "wrong values" in checks(report)["C"].cases[0].message
    assert "left the autograd trajectory" in checks(report)["trajectory"].cases[0].message
    assert train(report).score == pytest.approx(12)  # 6 gradients of 2 points; dC and the trajectory lost
    assert train(report).message == "2 of 8 checks failed; first to fix: dC"


def test_the_untouched_starter_scores_zero_and_says_why(tmp_path, config, public_cases):
    from grader.pipeline import grade

    report = grade(FIXTURES / "lecture_starter.ipynb", config, cases=public_cases)
    ex = train(report)
    assert ex.score == 0 and ex.status == "failed"
    assert ex.message.startswith("not attempted: the gradients in cell 16 are still None")
    assert "p.grad, autograd's gradient" in ex.message
    assert checks(report)["W1"].cases[0].message == "dW1 is still None: not attempted yet"
    assert checks(report)["trajectory"].cases[0].message.startswith("the update (cell 16, line 54")
    assert report.score == 0 and not report.integrity


def test_a_statement_that_raises_costs_only_what_it_did_not_compute(graded):
    report = graded("raises", RAISES)
    by_name = checks(report)
    assert {n for n, c in by_name.items() if c.status == "passed"} == set(PARAMS) - {"C"}
    line = RAISES.splitlines().index("    dC = torch.zeros_like(C_table)") + 1
    message = by_name["C"].cases[0].message
    assert f"cell 16, line {line} raised NameError: name 'C_table' is not defined" in message
    assert by_name["trajectory"].cases[0].status == "error" and "did not complete a step" in \
        by_name["trajectory"].cases[0].message


def test_nested_loops_cap_the_inner_one():
    loop = ("for epoch in range(10):\n    for i in range(max_steps):\n        Xb, Yb = Xtr[:32], Ytr[:32]\n"
            "        loss = F.cross_entropy(logits, Yb)\n        for p, grad in zip(parameters, grads):\n"
            "            p.data += -lr * grad\n")
    plan = plan_of(loop)
    assert plan.loop == (2, 4) and plan.unit == (1, 0)


@pytest.mark.parametrize("code, started", [
    ("for i in range(200000):\n    W1 += 1\n", 3),
    ("for i in range(200000):\n    W1 += 1\n    if i >= 1:\n        break\n", 2),       # the student's own break
    ("for epoch in range(5):\n    for i in range(2):\n        W1 += 1\n", 3),          # re-entered by an outer loop
    ("i = 0\nwhile i < 200000:\n    W1 += 1\n    i += 1\n", 3),
    ("i = 0\nwhile i < 2:\n    W1 += 1\n    i += 1\n", 2),                        # the student's own end
])
def test_the_capture_caps_the_loop_and_records_each_step(code, started):
    """The worker's half on its own: the rewritten loop runs `steps` iterations; one snapshot more than steps."""
    import ast

    import torch

    from grader.sandbox.inside.train_loop import STEPS_NAME, TICK_NAME, Capture, _Rewrite

    tree = ast.parse(code)
    loop = next(node for node in ast.walk(tree) if isinstance(node, (ast.For, ast.While))
                and any(isinstance(n, ast.AugAssign) for n in node.body))
    ns = {"W1": torch.zeros(2)}
    capture = Capture(ns, {}, steps=3)
    ns[STEPS_NAME], ns[TICK_NAME] = capture.steps, capture.tick
    body = [_Rewrite((loop.lineno, loop.col_offset), set()).visit(node) for node in tree.body]
    exec(compile(ast.fix_missing_locations(ast.Module(body=body, type_ignores=[])), "<cell 1>", "exec"), ns)
    capture.finish()
    assert capture.started == started and len(capture.snaps) == started + 1
    assert [float(s["params"]["W1"][0]) for s in capture.snaps] == list(range(started + 1))


def test_parameters_initialised_in_an_earlier_cell():
    init, loop = nbb.EX4.split("max_steps = 200000")
    cells = nbb.PREAMBLE + nbb.section_cells(ex4=False) + [("code", init), ("code", "max_steps = 200000" + loop)]
    plan = find_train(parse_cells(nbb.lecture_notebook(cells=cells)))
    assert plan.cell == 17 and [e["cell"] for e in plan.setup] == [16, 17]  # from its `# Exercise 4` header on
    without_header = [("code", init.replace("# Exercise 4", "# init")), ("code", "max_steps = 200000" + loop)]
    cells = nbb.PREAMBLE + nbb.section_cells(ex4=False) + without_header
    plan = find_train(parse_cells(nbb.lecture_notebook(cells=cells)))
    assert [e["cell"] for e in plan.setup] == [16, 17]  # the last cell that initialises every parameter


def test_a_gradient_read_from_autograd_is_not_run_and_named(graded):
    report = graded("autograd", AUTOGRAD)
    by_name = checks(report)
    assert {n for n, c in by_name.items() if c.status != "passed"} == {"C", "trajectory"}
    line = AUTOGRAD.splitlines().index("    dembcat = embcat.grad") + 1
    message = by_name["C"].cases[0].message
    assert "name 'dembcat' is not defined" in message and f"cell 16, line {line}, which sets it" in message
    assert "reads autograd's gradient" in message
    assert [(f.exercise, f.file, f.line, f.pattern) for f in report.integrity] == [("train", "cell 16", line, ".grad")]
    assert "embcat.grad" in report.integrity[0].message
