"""The notebook's part of the report: messages in terms of its cells, and what was read.

Scoring graded the .py files generated from the notebook (grader.submission.notebook); here the report's
file names, tracebacks and integrity findings are pointed back at the cells and lines the student wrote,
and the notebook's layout, cells and notes are recorded. The lecture layout's own part is its notes.
Whether the notebook was also run top to bottom (`--execute`) was decided in the run phase: its
result is passed in.
"""

import re

from grader.course.registry import EXERCISES
from grader.report import NotebookInfo

TRACE_FILE = re.compile(r'File "(?:[^"]*/)?(\w+\.py)", line (\d+)')


def _map_traceback(text: str | None, info) -> str | None:
    if not text:
        return text

    def repl(match):
        origin = info.origins.get(match.group(1))
        where = origin.locate(int(match.group(2))) if origin else None
        return f"cell {where[0]}, line {where[1]}" if where else match.group(0)

    return TRACE_FILE.sub(repl, text)


def annotate_report(report, info) -> None:
    """Messages in terms of the notebook's cells; the `notebook` section of the report.

    `info` is the submission's grader.submission.notebook.NotebookSubmission (read, not imported: scoring
    needs only its fields)."""
    for ex in report.exercises:
        origin = info.origins.get(ex.file)
        if origin is not None:
            ex.traceback = _map_traceback(ex.traceback, info)
            cells = ", ".join(str(c) for c in origin.cells)
            ex.file = f"cell {cells}" if len(origin.cells) == 1 else f"cells {cells}"
        elif ex.status == "not_submitted":
            exercise = EXERCISES[ex.id]
            msg = (f"not in the notebook: no code cell is tagged {ex.id!r} and none defines {exercise.function}")
            ex.message = msg
            ex.file = "not found"
            for check in ex.checks:
                check.message = msg
    for finding in report.integrity:  # the scan read the generated files: point at the cells instead
        origin = info.origins.get(finding.file)
        where = origin.locate(finding.line) if origin and finding.line else None
        if where:
            old = f"{finding.file} line {finding.line}"
            finding.file, finding.line = f"cell {where[0]}", where[1]
            finding.message = finding.message.replace(old, f"cell {where[0]}, line {where[1]}")
    report.submission.files = [info.name]
    report.notebook = NotebookInfo(format=info.format, exercise_cells=info.exercise_cells, notes=info.notes)


def finish_report(report, info, *, findings=(), execution=None) -> None:
    """The notebook's part of the report; `execution`: the NotebookExecution of running it (--execute), if it ran."""
    if info.format == "lecture":
        report.submission.files = [info.name]
        report.notebook = NotebookInfo(format="lecture", exercise_cells=info.exercise_cells,
                                       notes=list(info.lecture.notes))
        report.notes.append("The lecture's notebook: exercises 1 to 3 were graded by running their cells with the "
                            "grader's forward pass (the lecture's shapes) in scope, exercise 4 by running its "
                            "training loop for a few capped steps on the grader's data; data loading, plotting "
                            "and the rest of training were not run.")
    else:
        annotate_report(report, info)
    report.integrity += list(findings)
    if execution is not None:
        report.notebook.execution = execution
        report.notes.append("The notebook was also run top to bottom (this never changes the score): "
                            f"{execution.message}")
