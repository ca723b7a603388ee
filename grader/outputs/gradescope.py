"""Gradescope: its results.json, and `grader gradescope build`, the autograder zip that Gradescope expects.

results.json (`gradescope_results`) reads a finished Report (plus the config's `hidden_visibility`).
Gradescope can hold hidden cases back in time: each check becomes one test for its public cases
(always visible) and, when hidden cases ran, one for its hidden cases with `hidden_visibility` from
grading.yaml, so a student sees nothing about hidden cases before the instructor allows it.

The zip holds, at its root (Gradescope unpacks it into /autograder/source):

- `setup.sh`: run once, as root, while Gradescope builds the image: installs
  Python, bubblewrap, the pinned CPU build of torch and this grader (a real,
  non-editable install, so the sandbox never mounts /autograder/source);
- `run_autograder`: run for every submission: grades /autograder/submission
  into /autograder/results/results.json (and report.json beside it);
- `grading.yaml`: the course's policy;
- `grader_secret` (only when a secret is given): the hidden-case secret, mode
  0600, owned by root, passed to the grader with --secret-file. The grader
  runs as root (as Gradescope runs run_autograder); its worker does not see
  /autograder under bwrap, and drops to `nobody` (for which the file is
  unreadable). The secret is never put in the environment or next to the
  submission;
- `grader-src/`: the grader's source, and `build.json`: what was built.

Both scripts honour AUTOGRADER_ROOT (default /autograder) and GRADER_PYTHON
(an interpreter that already has the grader and torch: setup.sh then installs
nothing), so the zip can be tried outside Gradescope.
"""

import io
import json
import os
import stat
import zipfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from grader import __version__
from grader.outputs.check_text import hint_goes_to, num, part_text, points_text, shown, split_check
from grader.outputs.common import STOPPED, check_label
from grader.report import Report
from grader.safe_text import clean_tree

WHEN_SHOWN = {
    "visible": "are shown below",
    "after_due_date": "are shown after the due date",
    "after_published": "are shown once your instructor publishes the grades",
    "hidden": "are seen by your instructor only",
}


def _public_summary(report: Report, hidden_visibility: str) -> str:
    """The submission-level text on Gradescope: public information only."""
    lines = [f"Backprop Ninja autograder {report.grader_version}"]
    total_public = max_public = 0.0
    rows = []
    for ex in report.exercises:
        score = maximum = 0.0
        for check in ex.checks:
            part = split_check(check, report).get("public")
            if part:
                score += part.score
                maximum += part.max_score
        total_public += score
        max_public += maximum
        line = f"- {ex.title} ({ex.file}): {points_text(score)} / {points_text(maximum)} points on the public cases"
        if ex.status in STOPPED:
            line += f" - {ex.message}"
        rows.append(line)
        if ex.traceback and ex.status in ("error", "crashed", "timeout"):
            rows.append("  " + ex.traceback.strip().replace("\n", "\n  "))
    lines.append(f"Public cases: {points_text(total_public)} / {points_text(max_public)} points.")
    if report.hidden_cases == "included":
        n_hidden = sum(c.visibility == "hidden" for c in report.cases)
        lines.append(f"Hidden cases ({n_hidden} per gradient) carry the other "
                     f"{points_text(report.max_score - max_public)} points; their results "
                     f"{WHEN_SHOWN[hidden_visibility]}.")
    lines += ["", *rows]
    for finding in report.integrity:
        where = f"{finding.file}:{finding.line}" if finding.line else finding.file
        message = finding.message if finding.file in finding.message else f"{where}: {finding.message}"
        lines.append(f"Not allowed: {message}")
    for note in report.notes:
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def gradescope_results(report: Report, hidden_visibility: str = "after_published") -> dict:
    """Gradescope's results.json (autograder specification, "Output format")."""
    tests = []
    for i, ex in enumerate(report.exercises, start=1):
        for j, check in enumerate(ex.checks, start=1):
            parts = split_check(check, report)
            hint_at = hint_goes_to(parts)
            for vis, part in parts.items():
                hidden = vis == "hidden"
                tests.append({
                    "name": f"{ex.file}: {check_label(check)}" + (" (hidden cases)" if hidden else ""),
                    "number": f"{i}.{j}" + (".1" if hidden else ""),
                    "score": num(part.score),
                    "max_score": num(part.max_score),
                    "status": "passed" if part.ok else "failed",
                    "output": part_text(check, ex, part, report, hint_here=vis == hint_at),
                    "output_format": "text",
                    "visibility": hidden_visibility if hidden else "visible",
                    "tags": [ex.id, vis],
                    "extra_data": {"exercise": ex.id, "check": check.name, "cases_passed": part.passed,
                                   "cases_total": part.total},
                })
    return clean_tree({
        "score": num(report.score),
        "execution_time": round(report.duration_s, 3),
        "output": _public_summary(report, hidden_visibility),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",  # the grader's own log: instructors only
        "extra_data": {"grader_version": report.grader_version, "schema_version": report.schema_version,
                       "config_fingerprint": report.config_fingerprint,
                       "submission_sha256": report.submission.sha256,
                       "hidden_cases": report.hidden_cases, "isolation": report.isolation.level},
        "tests": tests,
    }, shown)


def gradescope_error_results(message: str) -> dict:
    """results.json when no report could be made (e.g. the submission cannot be read)."""
    return clean_tree({
        "score": 0.0,
        "execution_time": 0,
        "output": ("The autograder could not grade this submission:\n"
                   f"{message}\n"
                   "Check that you uploaded the exercise files (atomic.py, cross_entropy.py, batchnorm.py, "
                   "embedding.py, train.py). If this looks wrong, tell your instructor."),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [],
    }, shown)


# --------------------------------------------------------------------------- the autograder zip

DEFAULT_TORCH = "torch==2.13.0"
DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
DIST_NAME = "backprop-ninja-grader"
SECRET_NAME = "grader_secret"

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image.
# Overrides, for trying the zip outside Gradescope:
#   AUTOGRADER_ROOT  the /autograder folder (default /autograder)
#   GRADER_PYTHON    an interpreter that already has the grader and torch: install nothing
#   PYTHON, TORCH_SPEC, TORCH_INDEX_URL   what to install (defaults fixed by `grader gradescope build`)
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
PYTHON="${PYTHON:-@PYTHON@}"
TORCH_SPEC="${TORCH_SPEC:-@TORCH_SPEC@}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-@TORCH_INDEX_URL@}"

# The hidden-case secret is readable by its owner only, and stays in $SRC.
if [ -f "$SRC/grader_secret" ]; then chown 0:0 "$SRC/grader_secret"; chmod 600 "$SRC/grader_secret"; fi

if [ -n "${GRADER_PYTHON:-}" ]; then
  "$GRADER_PYTHON" -I -c "import grader, torch"
  echo "setup.sh: using $GRADER_PYTHON as it is; nothing installed"
  exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  # bubblewrap gives the strongest isolation; without it the grader falls back (see the report's `isolation`).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$PYTHON" "$PYTHON-venv" python3-pip bubblewrap >/dev/null
fi
"$PYTHON" -m venv "$ROOT/venv"
# The worker drops to `nobody` only if that user can reach the interpreter: keep the path traversable.
chmod o+x "$ROOT"
PIP=("$ROOT/venv/bin/pip" install --quiet --disable-pip-version-check)
# torch first, pinned, from the CPU index: an open range may pull a multi-GB CUDA build.
"${PIP[@]}" --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"
# A real (non-editable) install: the sandbox then mounts only the venv, never $SRC.
"${PIP[@]}" "$SRC/grader-src"
"$ROOT/venv/bin/grader" --version
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission, as root, from /autograder.
# Same overrides as setup.sh: AUTOGRADER_ROOT, GRADER_PYTHON.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
OUT="$ROOT/results"
PY="${GRADER_PYTHON:-$ROOT/venv/bin/python}"
mkdir -p "$OUT"
rm -f "$OUT/results.json"

args=(grade "$ROOT/submission" --config "$SRC/grading.yaml" --out "$OUT/report.json"
      --gradescope "$OUT/results.json")
# The secret stays in its root-only file; the grader reads it, its sandboxed worker cannot.
if [ -f "$SRC/grader_secret" ]; then args+=(--secret-file "$SRC/grader_secret"); fi

# -I and an empty sys.path[0]: the sandbox mounts what is on sys.path, so keep /autograder off it.
# Hidden cases come from the secret file only, never from the environment.
cd "$OUT"
env -u GRADER_SECRET "$PY" -I -c 'import sys; from grader.cli import main; sys.exit(main())' "${args[@]}" \
  2>"$OUT/grader.stderr"
status=$?
cat "$OUT/grader.stderr" >&2
echo "grader exited with status $status"

if [ ! -s "$OUT/results.json" ]; then
  # No report (e.g. the submission could not be read): still give Gradescope a result.
  "$PY" -I -c 'import json, sys
from grader.outputs.gradescope import gradescope_error_results
lines = [l for l in open(sys.argv[1], errors="replace").read().splitlines() if l.strip()]
message = lines[-1].removeprefix("grader: error: ") if lines else "unknown error"
json.dump(gradescope_error_results(message), open(sys.argv[2], "w"), indent=2)' \
    "$OUT/grader.stderr" "$OUT/results.json" \
  || printf '%s\n' '{"score": 0, "output": "The autograder failed to run. Please tell your instructor.", "tests": []}' \
       >"$OUT/results.json"
fi
exit 0
"""


def _pyproject() -> str:
    """A minimal pyproject for the copied source, from the installed distribution's metadata."""
    try:
        dist = metadata.distribution(DIST_NAME)
        requires = [r for r in (dist.requires or []) if "extra ==" not in r]
        version = dist.version
    except metadata.PackageNotFoundError:  # running from a bare checkout
        requires, version = ["torch>=2.2", "numpy", "pydantic>=2.5", "pyyaml", "safetensors",
                             "nbformat", "nbclient", "ipykernel", "rich", "pyseccomp"], __version__
    deps = ",\n".join(f"    {json.dumps(r)}" for r in requires)
    return (
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{DIST_NAME}"\nversion = "{version}"\nrequires-python = ">=3.10"\n'
        f"dependencies = [\n{deps}\n]\n\n"
        '[project.scripts]\ngrader = "grader.cli:main"\n\n'
        '[tool.setuptools.packages.find]\ninclude = ["grader*"]\n\n'
        '[tool.setuptools.package-data]\n"*" = ["*"]\n'
    )


def _add(archive: zipfile.ZipFile, name: str, data: bytes | str, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible zips
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data.encode() if isinstance(data, str) else data)


def package_files() -> list[Path]:
    package = Path(__file__).resolve().parents[1]  # the whole `grader` package
    return sorted(p for p in package.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))


def build_autograder(out: Path, config_path: Path, secret: str | None, *, torch_spec: str = DEFAULT_TORCH,
                     torch_index_url: str = DEFAULT_TORCH_INDEX, python: str = "python3") -> dict:
    """Write the zip to `out` (atomically); returns what went in (never the secret)."""
    from grader.config import load_config

    config = load_config(config_path)  # a broken policy fails here, not on Gradescope
    setup = (SETUP_SH.replace("@PYTHON@", python).replace("@TORCH_SPEC@", torch_spec)
             .replace("@TORCH_INDEX_URL@", torch_index_url))
    info = {
        "grader_version": __version__,
        "config_version": config.version,
        "config_fingerprint": config.fingerprint(),
        "torch": torch_spec,
        "torch_index_url": torch_index_url,
        "python": python,
        "hidden_cases": bool(secret) and bool(config.hidden_cases),
        "hidden_visibility": config.hidden_visibility,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add(archive, "setup.sh", setup, 0o755)
        _add(archive, "run_autograder", RUN_AUTOGRADER, 0o755)
        _add(archive, "grading.yaml", Path(config_path).read_bytes(), 0o644)
        if secret:
            _add(archive, SECRET_NAME, secret + "\n", 0o600)
        _add(archive, "grader-src/pyproject.toml", _pyproject(), 0o644)
        package = Path(__file__).resolve().parents[1]  # the whole `grader` package
        for path in package_files():
            _add(archive, f"grader-src/grader/{path.relative_to(package).as_posix()}", path.read_bytes(), 0o644)
        _add(archive, "build.json", json.dumps(info, indent=2) + "\n", 0o644)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    # With a secret inside, the zip itself is as private as the secret.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(buffer.getvalue())
    tmp.replace(out)
    return info
