"""The fixed sets a hidden case's result is reduced to, on both sides of the boundary, and the reduction.

The worker reduces a hidden case to these (`_quiet_result`, in grader.sandbox.inside.session's Zygote); the
grading side checks them again on what comes back (grader.sandbox.outcome), which must not import the
worker's process code: this module imports nothing at module level.
"""

NOTE_STATUSES = {"ok", "not_implemented", "wrong_type", "wrong_shape", "missing"}  # what harness.Answers writes
TRAJECTORY_STATUSES = {"ok", "failed", "not_implemented"}
HIDDEN_ATTEMPT = "autograd on a hidden case"


def _known(value, allowed: set[str], default: str) -> str:
    """`value` if it is one of `allowed` (a worker's JSON may hold anything, lists too), else `default`."""
    return value if isinstance(value, str) and value in allowed else default


def _quiet_result(meta: dict, expected: set[str]) -> dict:
    """A hidden case's result with only what scoring reads for a verdict: known keys, statuses from a fixed set.

    Nothing free-form (messages, shapes, timings, lecture facts) crosses: it could carry the hidden inputs.
    """
    notes = meta.get("notes") if isinstance(meta.get("notes"), dict) else {}
    keep = {"type": "result", "case": meta.get("case"),
            "notes": {k: {"status": _known(v.get("status"), NOTE_STATUSES, "wrong_type")}
                      for k, v in notes.items() if k in expected and isinstance(v, dict)}}
    if "error" in meta:
        keep["error"] = {"message": "raised an exception on a hidden case", "traceback": ""}
    if "trajectory" in meta:
        status = meta["trajectory"].get("status") if isinstance(meta["trajectory"], dict) else None
        keep["trajectory"] = {"status": _known(status, TRAJECTORY_STATUSES, "failed"), "message": ""}
    return keep


def hidden_attempt(ex_id: str) -> dict:
    """A runtime integrity report from a hidden-case child, reduced to a flag: no file, line or text of its own."""
    from grader.sandbox.inside import guard

    return {"type": "integrity", "exercise": ex_id, "pattern": HIDDEN_ATTEMPT, "file": None, "line": None,
            "message": guard.message(HIDDEN_ATTEMPT)}


def hidden_frames(exercise: dict, cases: list[dict]) -> list[tuple[dict, bytes]]:
    """What a paused child of `exercise` gets for its hidden `cases`: its own visible tensors of their files."""
    from grader.sandbox.inside import harness

    keep = harness.visible(exercise)
    frames = [({"type": "inputs", "file": file},
               harness.tensor_bytes({k: v for k, v in harness.PRELOADED.get(file, {}).items() if keep(k)}))
              for file in dict.fromkeys(c["file"] for c in cases)]
    return frames + [({"type": "end"}, b"")]
