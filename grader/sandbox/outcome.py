"""What crosses back from a worker, as the grading side keeps it: per-exercise runs and cleaned frames.

The worker side is not trusted: every frame is reduced here to the fields and types scoring reads
(scoring imports this module, never the launcher in grader.sandbox.runner).
"""

from dataclasses import dataclass, field
from pathlib import Path

from grader.safe_text import valid

@dataclass
class ExerciseRun:
    """What came back for one exercise: per-case frames, or an exercise-level failure."""

    results: dict[str, tuple[dict, bytes]] = field(default_factory=dict)
    error: dict | None = None  # {"status", "message", "traceback"?}
    seconds: float = 0.0
    findings: list[dict] = field(default_factory=list)  # runtime integrity reports: pattern, file, line, message


@dataclass
class RunOutcome:
    exercises: dict[str, ExerciseRun]
    stdout: str = ""
    stderr: str = ""
    output_dropped: int = 0
    workers_started: int = 0


def _text(value, limit: int) -> str:
    return valid(str(value)[:limit]) if value is not None else ""


def clean_result(meta: dict, hidden: bool = False, expected: set[str] = frozenset()) -> dict:
    """A result frame reduced to the fields and types scoring reads: the worker side is not trusted.

    A hidden case's result keeps only its verdict-bearing fields, from fixed sets (grader.sandbox.inside.session reduces
    it the same way first): nothing free-form, no shapes, no timing.
    """
    if hidden:
        from grader.sandbox.inside.session import NOTE_STATUSES, TRAJECTORY_STATUSES, _known

        notes = meta.get("notes") if isinstance(meta.get("notes"), dict) else {}
        out = {"type": "result", "case": _text(meta.get("case"), 100),
               "notes": {_text(k, 100): {"status": _known(v.get("status"), NOTE_STATUSES, "wrong_type"),
                                         "message": ""}
                         for k, v in list(notes.items())[:200] if isinstance(v, dict) and k in expected}}
        if isinstance(meta.get("error"), dict):
            out["error"] = {"message": "raised an exception on a hidden case", "traceback": ""}
        if isinstance(meta.get("trajectory"), dict):
            status = meta["trajectory"].get("status")
            out["trajectory"] = {"status": _known(status, TRAJECTORY_STATUSES, "failed"), "message": ""}
        return out
    out = {"type": "result", "case": _text(meta.get("case"), 100)}
    notes = meta.get("notes")
    if isinstance(notes, dict):
        out["notes"] = {}
        for key, note in list(notes.items())[:200]:
            if isinstance(note, dict):
                clean = {"status": _text(note.get("status"), 40), "message": _text(note.get("message"), 300)}
                shape = note.get("got_shape")
                if isinstance(shape, list) and all(type(d) is int for d in shape[:8]):
                    clean["got_shape"] = shape[:8]
                out["notes"][_text(key, 100)] = clean
    if isinstance(meta.get("error"), dict):
        out["error"] = {"message": _text(meta["error"].get("message"), 500),
                        "traceback": _text(meta["error"].get("traceback"), 4000)}
    if isinstance(meta.get("trajectory"), dict):
        out["trajectory"] = {"status": _text(meta["trajectory"].get("status"), 40),
                             "message": _text(meta["trajectory"].get("message"), 300)}
    if isinstance(meta.get("seconds"), (int, float)):
        out["seconds"] = float(meta["seconds"])
    if isinstance(meta.get("lecture"), dict):
        out["lecture"] = meta["lecture"]  # the lecture format's facts, read defensively by grader.scoring.lecture
    return out


def line_counts(folder: Path) -> dict[str, int]:
    """The submission's Python files (relative paths) and their line counts: what a finding may name."""
    counts = {}
    for path in sorted(folder.rglob("*.py"))[:1000]:
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as fh:
                counts[str(path.relative_to(folder))] = sum(1 for _ in fh)
    return counts


def clean_finding(meta: dict, own_file: str, files: dict[str, int], hidden: bool) -> dict | None:
    """A runtime integrity report checked against what it can be: a file of the submission, a line in it.

    In the hidden phase it is only a flag (file, line and text are fixed), whatever the worker sent.
    """
    if hidden:
        from grader.sandbox.inside.session import HIDDEN_ATTEMPT

        return {"pattern": HIDDEN_ATTEMPT, "file": None, "line": None,
                "message": (f"{HIDDEN_ATTEMPT} is not allowed: PyTorch's automatic differentiation computes the "
                            "answers, so every gradient must be written out by hand")}
    if not isinstance(meta.get("pattern"), str) or not isinstance(meta.get("message"), str):
        return None
    file, line = meta.get("file"), meta.get("line")
    file = file if isinstance(file, str) and file in files else None
    lines = files.get(file or own_file, 0)
    line = line if type(line) is int and 1 <= line <= lines else None
    return {"pattern": meta["pattern"][:100], "message": meta["message"][:500], "file": file, "line": line}
