"""The fixed sets a hidden case's result is reduced to, on both sides of the boundary (data only).

The worker reduces a hidden case to these (grader.sandbox.inside.session); the grading side checks them
again on what comes back (grader.sandbox.outcome), which must not import the worker's process code.
"""

NOTE_STATUSES = {"ok", "not_implemented", "wrong_type", "wrong_shape", "missing"}  # what harness.Answers writes
TRAJECTORY_STATUSES = {"ok", "failed", "not_implemented"}
HIDDEN_ATTEMPT = "autograd on a hidden case"


def _known(value, allowed: set[str], default: str) -> str:
    """`value` if it is one of `allowed` (a worker's JSON may hold anything, lists too), else `default`."""
    return value if isinstance(value, str) and value in allowed else default
