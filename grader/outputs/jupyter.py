"""The page's view in Jupyter and Colab: the graph and the checks of an exercise, inline.

Two ways in:

- the student notebook's check cells call `show(exercise_id, function)`
  (through the notebook's `show_graded` helper, which falls back to the
  plain `cmp` lines when the grader is not installed): the function the
  student just defined runs in their own kernel on the public cases only
  (nothing hidden is in reach there), and the grader scores the answers as
  it always does;
- `from grader import check; check()` in any notebook, the lecture's own
  included: grades the notebook file as saved, on the public cases, through
  the usual sandboxed pipeline, and shows every exercise.

This is practice feedback: the real grade also runs the hidden cases.
"""

import inspect
import json
import os
import tempfile
import time
from pathlib import Path

from grader.config import ConfigError, GradingConfig, load_config
from grader.course.registry import EXERCISES

_CASES: dict[str, list] = {}


def find_config(start: Path | None = None) -> Path:
    """grading.yaml in the working directory or the nearest folder above it."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "grading.yaml").is_file():
            return folder / "grading.yaml"
    raise ConfigError("no grading.yaml in this folder or above it: open the notebook from the course's folder, "
                      "or pass config=... with the course's grading.yaml")


def _config(config) -> GradingConfig:
    if isinstance(config, GradingConfig):
        return config
    return load_config(Path(config) if config else find_config())


def _public_cases(config: GradingConfig) -> list:
    from grader.pipeline import build_cases

    key = config.fingerprint()
    if key not in _CASES:
        _CASES[key] = build_cases(config, None)
    return _CASES[key]


def grade_function(ex_id: str, function, config=None):
    """Score a function defined in this kernel on the public cases: an ExerciseResult, like the report's."""
    import torch

    from grader.sandbox.inside.harness import Harness
    from grader.submission.integrity import scan
    from grader.sandbox.outcome import ExerciseRun
    from grader.feedback.engine import Diagnoser
    from grader.scoring.score import score_exercise, score_not_allowed

    config = _config(config)
    ex = EXERCISES[ex_id]
    cases = _public_cases(config)
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        source = None
    if source is not None:
        findings = [f for f in scan({ex.file: source}, config.integrity.allow) if f.exercise in (ex_id, None)]
        if findings:
            return score_not_allowed(ex_id, config, cases, [f.message for f in findings], None, Diagnoser)
    by_name = {c.spec.name: c for c in cases}

    class InKernel(Harness):  # the worker's harness, with the kernel's function and the cases in memory
        frames: dict = {}
        error = None

        def send(self, meta, blob=b""):
            if meta.get("type") == "result":
                self.frames[meta["case"]] = (meta, blob)
            else:
                self.error = {"status": "error", "message": str(meta.get("message", "failed")),
                              "traceback": meta.get("traceback")}

        def load_function(self, exercise):
            return function

        def inputs(self, case):
            return by_name[case["name"]].inputs

    harness = InKernel({"submission": os.getcwd(), "memory_mb": config.limits.memory_mb,
                        "file_size_mb": config.limits.file_size_mb, "sgd": config.train.model_dump()}, -1)
    harness.frames = {}
    plan = ex.plan(config)
    described = [{"name": c.spec.name, "file": "", "ints": c.ints, "hidden": False,
                  "max_numel": 16 * max(t.numel() for t in c.inputs.values()) + 4096} for c in cases]
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, config.dtype))  # as the worker does: torch.zeros(...) keeps working
    started = time.perf_counter()
    try:
        harness.run_exercise(plan, described)
    finally:
        torch.set_default_dtype(dtype)
    run = ExerciseRun(results=harness.frames, error=harness.error, seconds=time.perf_counter() - started)
    return score_exercise(ex_id, config, cases, run, Diagnoser)


def _display(html: str) -> None:
    from IPython.display import HTML, display

    display(HTML(html))


def show(ex_id: str, function, config=None) -> bool:
    """Show the graph and checks of `function` for exercise `ex_id`; False when that is not possible here."""
    from grader.outputs.html_report import fragment

    try:
        result = grade_function(ex_id, function, config)
    except (ConfigError, ImportError) as err:
        print(f"(the grader's view is not available here: {err})")
        return False
    _display(fragment([result]) + '<p style="color:#666;font-size:.85rem">Graded on the public cases only; '
             "the real grade also runs hidden ones.</p>")
    return True


def notebook_path() -> Path:
    """The notebook this kernel runs, where the front end says so."""
    candidates = [os.environ.get("JPY_SESSION_NAME")]
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            candidates += [shell.user_ns.get("__session__"), shell.user_ns.get("__vsc_ipynb_file__")]
    except ImportError:
        pass
    for candidate in candidates:
        if candidate and str(candidate).endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate)
    colab = _colab_notebook()
    if colab is not None:
        return colab
    here = sorted(Path.cwd().glob("*.ipynb"))
    if len(here) == 1:
        return here[0]
    raise ConfigError("cannot tell which notebook this is: call check('your_notebook.ipynb') with its path")


def _colab_notebook() -> Path | None:
    """Colab keeps the notebook in the browser: its front end hands over the current JSON."""
    try:
        from google.colab import _message  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        notebook = _message.blocking_request("get_ipynb", request="", timeout_sec=30)["ipynb"]
    except Exception:  # noqa: BLE001 - an old or changed Colab: ask for the path instead
        return None
    path = Path(tempfile.mkdtemp(prefix="grader-colab-")) / "colab.ipynb"
    path.write_text(json.dumps(notebook))
    return path


def check(path: str | os.PathLike | None = None, config=None) -> None:
    """Grade this notebook (as saved on disk) on the public cases and show every exercise inline."""
    from grader.pipeline import grade
    from grader.outputs.html_report import fragment

    notebook = Path(path) if path else notebook_path()
    if config:
        cfg = _config(config)
    else:  # the course's grading.yaml beside the notebook, else where the kernel runs
        try:
            cfg = load_config(find_config(notebook.resolve().parent))
        except ConfigError:
            cfg = load_config(find_config())
    report = grade(notebook, cfg, secret=None)
    graded = [ex for ex in report.exercises if ex.status != "not_submitted"] or report.exercises
    _display(f'<p><b>{report.score:.4g} / {report.max_score:.4g}</b> on the public cases, for '
             f"<code>{_escape(notebook.name)}</code> as saved on disk (save it first to grade your latest "
             "edits).</p>" + fragment(graded))


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)
