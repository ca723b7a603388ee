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


def hidden_frames(exercise: dict, cases: list[dict], piped_only: bool = False) -> list[tuple[dict, bytes]]:
    """What a paused child of `exercise` gets for its hidden `cases`: its own visible tensors of their files,
    then an `end` frame naming the exercise. With `piped_only`, only those that came down a pipe: what a group's
    child (which dropped them, harness.restrict) gets when that exercise's public turn comes."""
    from grader.sandbox.inside import harness

    keep = harness.visible(exercise)
    frames = []
    for file in dict.fromkeys(c["file"] for c in cases):
        tensors = {k: v for k, v in harness.PRELOADED.get(file, {}).items()
                   if keep(k) and (not piped_only or (file, k) in harness.PIPED)}
        if tensors or not piped_only:
            frames.append(({"type": "inputs", "file": file}, harness.tensor_bytes(tensors)))
    return frames + [({"type": "end", "exercise": exercise["id"]}, b"")]


def expected_keys(exercise: dict) -> set[str]:
    """The answer keys an exercise's child can send back: its gradients, and a trajectory check's parameters
    after each step (and, for the lecture notebook's loop, grader.sandbox.inside.train_loop, its gradients)."""
    keys = set(exercise.get("gradient_checks", ()))
    for check in exercise.get("checks", ()):
        if isinstance(check, dict) and check.get("kind") == "trajectory":
            steps, params = range(int(check.get("steps", 0))), [str(p) for p in check.get("params", ())]
            keys |= {f"{kind}{i}.{k}" for kind in ("step", "grad") for i in steps for k in params}
    return keys
