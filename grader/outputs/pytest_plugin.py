"""pytest for students: one test per gradient, the hint as the failure message.

    pytest --backprop-submission=assignments/

(installed with the grader through the `pytest11` entry point; otherwise
`pytest -p grader.outputs.pytest_plugin ...`, or `pytest_plugins = ["grader.outputs.pytest_plugin"]`
in a conftest.py, with `backprop_submission = assignments/` under
`[pytest]` in pytest.ini to make the option the default).

The submission is graded once per session by `grader.pipeline.grade`, in the
same sandboxed worker as `grader grade`: student code never runs in the
pytest process. Collection only lists the checks (from grading.yaml), so
`--collect-only` and `-k dW1` cost nothing; the grading happens when the
first of these tests runs. Without the option the plugin does nothing.
"""

from pathlib import Path

import pytest

# Only the standard library and pytest at import time: every pytest run loads this module.


def pytest_addoption(parser):
    group = parser.getgroup("backprop-ninja", "Backprop Ninja grader")
    group.addoption("--backprop-submission", metavar="PATH",
                    help="grade this submission (folder, .zip or notebook): one test per gradient")
    group.addoption("--backprop-config", metavar="FILE",
                    help="the grading policy (default: grading.yaml in the current folder, else in rootdir, "
                         "else the course policy packaged with the grader)")
    group.addoption("--backprop-secret-file", metavar="FILE",
                    help="hidden-case secret (else $GRADER_SECRET; without one, public cases only)")
    group.addoption("--backprop-report", metavar="FILE", help="also write the JSON report to FILE")
    parser.addini("backprop_submission", "default for --backprop-submission")
    parser.addini("backprop_config", "default for --backprop-config")


def _setting(config, name: str) -> Path | None:
    """A path option: from the command line (relative to the current folder) or the ini file (relative to it)."""
    value = config.getoption(f"--backprop-{name}")
    if value:
        return _resolve(config, value)
    value = config.getini(f"backprop_{name}")
    if value:
        base = config.inipath.parent if config.inipath else config.rootpath
        return base / value
    return None


def _resolve(config, value: str) -> Path:
    return config.invocation_params.dir / value  # an absolute `value` stays as it is


def pytest_configure(config):
    path = _setting(config, "submission")
    if path is None:
        return  # inert: the option was not given
    if not path.exists():
        raise pytest.UsageError(f"--backprop-submission: {path} does not exist")
    config_file = _setting(config, "config")
    from grader.config import ConfigError, find_config

    if config_file and not config_file.is_file():
        raise pytest.UsageError(f"grading policy not found: {config_file} (check --backprop-config)")
    if not config_file:  # grading.yaml in the current folder, else in rootdir, else the packaged policy
        local = [config.invocation_params.dir / "grading.yaml", config.rootpath / "grading.yaml"]
        config_file = next((c for c in local if c.is_file()), None)
    try:
        grading = find_config(config_file, cwd=config.invocation_params.dir)
    except ConfigError as err:
        raise pytest.UsageError(str(err)) from None
    config.pluginmanager.register(BackpropSession(config, path, grading), "backprop-ninja-session")


class BackpropSession:
    """Builds the test items at collection, grades on first use, reports the total at the end."""

    def __init__(self, config, submission: Path, grading):
        self.config = config
        self.submission = submission
        self.grading = grading
        self.report = None
        self.error: str | None = None

    def get_report(self):
        if self.report is None and self.error is None:
            from grader.cli import read_secret
            from grader.config import ConfigError
            from grader.pipeline import grade
            from grader.submission.load import SubmissionError

            try:
                secret = read_secret(self.config.getoption("--backprop-secret-file"))
                self.report = grade(self.submission, self.grading, secret=secret)
            except (SubmissionError, ConfigError) as err:
                self.error = str(err)
                return None
            except Exception as err:  # noqa: BLE001 - say it on every test, do not retry for each
                self.error = f"{type(err).__name__}: {err}"
                return None
            target = self.config.getoption("--backprop-report")
            if target:
                from grader.report import write_report

                write_report(self.report, _resolve(self.config, target))
        return self.report

    @pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, so they apply to these tests too
    def pytest_collection_modifyitems(self, session, config, items):
        from grader.course.registry import EXERCISES

        for ex_id, ex_config in self.grading.exercises.items():
            if not ex_config.enabled:
                continue
            name = f"backprop-ninja/{EXERCISES[ex_id].file}"
            collector = ExerciseCollector.from_parent(session, name=name, nodeid=name,
                                                      exercise=EXERCISES[ex_id], plugin=self)
            # Through pytest's own collect hooks, so the "collected N items" line counts these tests.
            report = collector.ihook.pytest_make_collect_report(collector=collector)
            collector.ihook.pytest_collectreport(report=report)
            items.extend(report.result)

    def pytest_terminal_summary(self, terminalreporter):
        from grader.safe_text import one_line

        if self.error:
            terminalreporter.write_sep("-", "Backprop Ninja")
            terminalreporter.write_line(one_line(f"could not grade {self.submission}: {self.error}"))
        elif self.report is not None:
            report = self.report
            terminalreporter.write_sep("-", "Backprop Ninja")
            terminalreporter.write_line(f"score: {report.score:.2f} / {report.max_score:g} points "
                                        f"({one_line(report.submission.path)})")
            for note in report.notes:
                terminalreporter.write_line(one_line(f"note: {note}"))


class ExerciseCollector(pytest.Collector):
    def __init__(self, *, exercise, plugin: BackpropSession, **kwargs):
        super().__init__(**kwargs)
        self.exercise = exercise
        self.plugin = plugin

    def collect(self):
        return [GradientItem.from_parent(self, name=_label(check), check=check) for check in self.exercise.checks]


def _label(check: str) -> str:
    return check if check == "trajectory" else f"d{check}"


class GradientFailed(Exception):
    pass


class GradientItem(pytest.Item):
    def __init__(self, *, check: str, **kwargs):
        super().__init__(**kwargs)
        self.check = check
        self.exercise = self.parent.exercise
        self.plugin = self.parent.plugin

    def runtest(self):
        from grader.outputs.formats import check_text, failure_message

        report = self.plugin.get_report()
        if report is None:
            raise GradientFailed(f"the submission could not be graded: {self.plugin.error}")
        ex = next((e for e in report.exercises if e.id == self.exercise.id), None)
        check = next((c for c in ex.checks if c.name == self.check), None) if ex else None
        if check is None:  # e.g. a lecture notebook has no file for this exercise
            pytest.skip(f"{self.exercise.file}: {self.name} is not graded for this submission")
        if check.status != "passed":
            headline = check.hint or failure_message(check, ex)  # the hint, when there is one, first
            details = check_text(check, ex, report, with_hint=not check.hint)
            raise GradientFailed(f"{headline}\n\n{details}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GradientFailed):
            from grader.safe_text import printable

            return printable(str(excinfo.value), multiline=True)  # the student's text: escaped on the terminal
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.plugin.submission, None, f"{self.exercise.file}::{self.name}"
