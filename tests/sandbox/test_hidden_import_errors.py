"""An error at import under a secret: the public cases still say the real error, its file and line.

With hidden cases on (a secret, as on Gradescope and in CI), an exercise that cannot even be imported
used to be reported with the hidden phase's masked "failed on the hidden cases" message instead.
"""

import pytest

from conftest import SECRET

BROKEN = {
    "atomic.py": "import torch\n\ndef backward_atomic(**fwd)\n    return {}\n",               # SyntaxError, line 3
    "cross_entropy.py": "import torch\n\nscale = undefined_name * 2\n",                      # NameError, line 3
    "batchnorm.py": "import math\n\nraise SystemExit(3)\n",                                # sys.exit at import (sys.exit itself is refused by the scan)
}


@pytest.fixture(scope="module")
def report(tmp_path_factory, config, all_cases):
    from conftest import make_submission
    from grader.pipeline import grade

    sub = make_submission(tmp_path_factory.mktemp("broken") / "sub", replace=BROKEN)
    return grade(sub, config, secret=SECRET, cases=all_cases)


@pytest.mark.parametrize("ex_id, message, where, error", [
    ("atomic", "importing atomic.py raised SyntaxError", "line 3", "SyntaxError: expected ':'"),
    ("cross_entropy", "importing cross_entropy.py raised NameError", 'cross_entropy.py", line 3',
     "NameError: name 'undefined_name' is not defined"),
    ("batchnorm", "importing batchnorm.py called sys.exit(3)", 'batchnorm.py", line 3', "SystemExit: 3"),
])
def test_the_real_error_file_and_line(report, ex_id, message, where, error):
    ex = report.exercise(ex_id)
    assert ex.status == "error" and ex.score == 0
    assert ex.message.startswith(message), ex.message
    assert where in ex.traceback and error in ex.traceback, ex.traceback
    for check in ex.checks:
        public = [c for c in check.cases if c.visibility == "public"]
        hidden = [c for c in check.cases if c.visibility == "hidden"]
        assert public and hidden
        assert all(c.message.startswith(message) for c in public)
        assert all(c.status == "error" and not c.passed for c in public + hidden)
        assert check.message.startswith(message)


def test_hidden_cases_still_count_and_stay_hidden(report):
    assert report.hidden_cases == "included"
    assert "failed on the hidden cases" not in report.model_dump_json()
    for ex_id in ("atomic", "cross_entropy", "batchnorm"):
        for check in report.exercise(ex_id).checks:
            hidden = [c for c in check.cases if c.visibility == "hidden"]
            assert all(c.max_abs_diff is None and c.expected_shape is None for c in hidden)


def test_nothing_else_is_lost(report):
    for ex_id in ("embedding", "train"):
        ex = report.exercise(ex_id)
        assert ex.status == "passed" and ex.score == ex.max_score
        assert any(c.visibility == "hidden" and c.passed for check in ex.checks for c in check.cases)
