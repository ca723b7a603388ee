"""`grader` command line. Exit codes: 0 ok, 1 under --min-score (or `release --check`: out of date), 2 usage or config error."""

import argparse
import os
import sys
from pathlib import Path

from grader import __version__
from grader.config import ConfigError, find_config, load_config, read_secret
from grader.phases import mark
from grader.safe_text import one_line

EXIT_OK, EXIT_BELOW_MIN, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no traceback
        raise UsageError(message)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


def _cache_folder(args) -> Path | None:
    from grader.course import refcache

    folder = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else refcache.default_folder()
    refcache.memos_in(folder)
    return folder


def cmd_grade(args) -> int:
    # One thread for the grading process's torch (read when torch loads): its tensors are tiny, and
    # two threads per op fight the worker for the cores (on 2 cores, scoring a notebook took 7x longer).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    from grader.pipeline import grade

    mark("grader imported")
    config = find_config(args.config)
    secret = read_secret(args.secret_file)
    cache = _cache_folder(args)
    mark("config read")
    try:
        report = grade(Path(args.path), config, secret=secret, timeout=args.timeout,
                       isolation=args.isolation, student_id=args.student_id,
                       execute=True if args.execute else None, cache=cache)
    except Exception as err:
        from grader.submission.load import SubmissionError  # not before: the worker starts first (grader.pipeline)

        if isinstance(err, SubmissionError):
            raise ConfigError(str(err)) from None
        raise
    mark("scored")
    from grader.report import write_report

    write_report(report, Path(args.out))
    mark("report written")
    from grader.outputs.exports import EXPORTS, write_exports

    exported = write_exports(report, {kind: getattr(args, kind) for kind in EXPORTS}, config.hidden_visibility)
    if args.markdown:
        from grader.outputs.markdown import write_markdown

        write_markdown(report, Path(args.markdown))
        exported.append(Path(args.markdown))
    if args.html:
        from grader.outputs.html_report import write_page

        write_page(report, Path(args.html))
        exported.append(Path(args.html))
    if not args.quiet:
        from grader.outputs.terminal import print_report

        print_report(report, hints=args.hints)
        print(f"report written to {args.out}")
        for path in exported:
            print(f"also written: {path}")
    mark("views written")
    if args.min_score is not None and report.score < args.min_score:
        if not args.quiet:
            print(f"score {report.score:g} is below --min-score {args.min_score:g}", file=sys.stderr)
        return EXIT_BELOW_MIN
    return EXIT_OK


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value!r}")
    return number


def cmd_batch(args) -> int:
    from grader.batch.run import run_batch

    config = find_config(args.config)
    secret = read_secret(args.secret_file)
    out = Path(args.out)
    result = run_batch(Path(args.directory), out, config, secret=secret, jobs=args.jobs, timeout=args.timeout,
                       isolation=args.isolation, regrade=args.regrade, quiet=args.quiet, scheduler=args.scheduler,
                       timestamps=Path(args.timestamps) if args.timestamps else None,
                       similarity=not args.no_similarity)
    if not args.quiet:
        print(f"{result.total} submissions: {result.graded} graded, {result.skipped} unchanged (skipped), "
              f"{result.unreadable} unreadable, {result.errors} grader errors, in {result.seconds:.1f} s")
        if result.ignored:
            print(f"ignored (not a folder, .zip or .ipynb): {one_line(', '.join(result.ignored))}")
        print(f"reports: {out}/<name>.json; gradebook: {result.gradebook}; summary: {result.summary}")
    return EXIT_OK


def cmd_gradebook_export(args) -> int:
    from grader.batch.gradebook import export

    policy = load_config(args.config).late if args.config else None
    try:
        written = export(Path(args.outdir), Path(args.out) if args.out else None, lms=args.lms,
                         id_column=args.id_column, policy=policy, use_stored_policy=not args.config)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    print(f"wrote {written}")
    return EXIT_OK


def cmd_release(args) -> int:
    from grader.course.registry import BUILT_IN, EXERCISES
    from grader.release.build import ReleaseError, check_release, write_release

    exercises, base = BUILT_IN, Path(".")
    if args.config:  # a course of its own: its exercises, and its folders beside its grading.yaml
        config = load_config(Path(args.config))
        exercises = tuple(ex for ex in EXERCISES.values() if ex.id in config.exercises)
        base = Path(args.config).parent
    solutions = Path(args.solutions) if args.solutions else base / "solutions"
    assignments = Path(args.assignments) if args.assignments else base / "assignments"
    try:
        if args.check:
            problems = check_release(solutions, assignments, exercises)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print("the release is out of date: run `grader release` and commit the result", file=sys.stderr)
                return EXIT_BELOW_MIN
            print("the release is up to date")
            return EXIT_OK
        changed = write_release(solutions, assignments, exercises)
    except ReleaseError as err:
        raise ConfigError(str(err)) from None
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print("the release was already up to date")
    return EXIT_OK


def cmd_gradescope_build(args) -> int:
    from grader.outputs.gradescope import DEFAULT_TORCH, DEFAULT_TORCH_INDEX, build_autograder

    secret = read_secret(args.secret_file)
    info = build_autograder(Path(args.out), Path(args.config), secret, torch_spec=args.torch or DEFAULT_TORCH,
                            torch_index_url=args.torch_index_url or DEFAULT_TORCH_INDEX, python=args.python)
    print(f"wrote {args.out}: grader {info['grader_version']}, {info['torch']}, config {info['config_fingerprint']}")
    if info["hidden_cases"]:
        print(f"hidden cases included (secret inside the zip, mode 0600; visibility {info['hidden_visibility']}): "
              "keep the zip private")
    else:
        print("note: no secret given (--secret-file or $GRADER_SECRET): hidden cases will not run", file=sys.stderr)
    return EXIT_OK


def cmd_schema(args) -> int:
    from grader.report import json_schema, write_atomically

    if args.out:
        write_atomically(Path(args.out), json_schema() + "\n")
    else:
        print(json_schema())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="grader", description="Grade Backprop Ninja submissions against autograd.")
    parser.add_argument("--version", action="version", version=f"grader {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    g = sub.add_parser("grade", help="grade one submission (a folder or a .zip of the exercise files)")
    g.add_argument("path", help="the submission: a folder, a .zip or a notebook (.ipynb)")
    g.add_argument("--out", default="report.json", help="where to write the JSON report (default: report.json)")
    g.add_argument("--config", help="the grading policy (default: grading.yaml in the current folder, else the "
                                    "course policy packaged with the grader)")
    g.add_argument("--timeout", type=_positive, help="seconds per exercise (overrides grading.yaml)")
    g.add_argument("--secret-file", help="file holding the hidden-case secret (else $GRADER_SECRET)")
    g.add_argument("--min-score", type=float, help="exit 1 when the score (in points) is below this")
    g.add_argument("--isolation", choices=["auto", "bwrap", "unshare", "process"], help="force an isolation level")
    g.add_argument("--student-id", help="recorded in the report")
    g.add_argument("--quiet", action="store_true", help="print nothing; only write the report")
    g.add_argument("--cache-dir", metavar="DIR",
                   help="where the cases' references are cached between grades, private to you (default: "
                        "$XDG_CACHE_HOME/backprop-ninja-grader; used with bubblewrap isolation only)")
    g.add_argument("--no-cache", action="store_true", help="build the cases' references afresh, cache nothing")
    g.add_argument("--execute", action="store_true",
                   help="for a notebook: also run it top to bottom (sandboxed, per-cell timeout) and report failing cells")
    for kind, what in (("gradescope", "Gradescope's results.json"), ("junit", "JUnit XML (one testsuite per exercise)"),
                       ("classroom", "the JSON GitHub Classroom's autograding reporter reads")):
        g.add_argument(f"--{kind}", metavar="FILE", help=f"also write {what} to FILE")
    g.add_argument("--html", metavar="FILE",
                   help="also write the student's page: a self-contained HTML file with each exercise's "
                        "computation graph coloured by verdict, and the hints")
    g.add_argument("--markdown", metavar="FILE",
                   help="also write a Markdown summary to FILE (a CI step summary such as $GITHUB_STEP_SUMMARY, "
                        "or an LMS comment)")
    g.add_argument("--hints", choices=["first", "all"], default="first",
                   help="on screen, each hint's first level (default) or all of them: nudge, local rule, worked "
                        "expression")
    g.set_defaults(func=cmd_grade)

    bt = sub.add_parser("batch", help="grade every submission in a folder (a course at once) into a gradebook")
    bt.add_argument("directory", help="one submission per entry: a folder, a .zip or a .ipynb")
    bt.add_argument("--out", required=True, help="output folder: <name>.json reports, gradebook.sqlite/.csv, summary")
    bt.add_argument("--jobs", type=_positive_int, help="submissions graded at once (default: the number of CPUs)")
    bt.add_argument("--timeout", type=_positive, help="seconds per exercise (overrides grading.yaml)")
    bt.add_argument("--config", help="the grading policy (default: grading.yaml in the current folder, else the "
                                     "course policy packaged with the grader)")
    bt.add_argument("--secret-file", help="file holding the hidden-case secret (else $GRADER_SECRET)")
    bt.add_argument("--regrade", action="store_true", help="grade every submission again, even unchanged ones")
    bt.add_argument("--no-similarity", action="store_true",
                    help="leave out the summary's groups of submissions that share the same wrong answers")
    bt.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    bt.add_argument("--isolation", choices=["auto", "bwrap", "unshare", "process"], help="force an isolation level")
    bt.add_argument("--timestamps", metavar="CSV",
                    help="submission times (columns name, submitted_at) for late penalties, instead of file times")
    bt.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                    help="run on an existing Dask distributed cluster (optional extra `dask`)")
    bt.set_defaults(func=cmd_batch)

    gb = sub.add_parser("gradebook", help="the gradebook of a batch's output folder")
    gb_sub = gb.add_subparsers(dest="gradebook_command", required=True, parser_class=Parser)
    ex = gb_sub.add_parser("export", help="write the gradebook as CSV (late penalties applied)")
    ex.add_argument("outdir", help="the output folder of `grader batch`")
    ex.add_argument("--out", help="the CSV to write (default: OUTDIR/gradebook.csv, or gradebook-lms.csv with --lms)")
    ex.add_argument("--lms", action="store_true", help="an LMS upload: id column, score, max_score, comment")
    ex.add_argument("--id-column", default="id", help="the LMS's name for the id column (default: id)")
    ex.add_argument("--config", help="take the late policy from this grading.yaml (default: the last batch's)")
    ex.set_defaults(func=cmd_gradebook_export)

    r = sub.add_parser("release", help="regenerate assignments/ (stubs and notebook) and the solved notebook from solutions/")
    r.add_argument("--check", action="store_true", help="write nothing; exit 1 if the committed release is out of date")
    r.add_argument("--config", metavar="GRADING_YAML",
                   help="release the course of this grading.yaml: its exercises (and definitions), its folders")
    r.add_argument("--solutions", help="the reference solutions (default: solutions, beside --config's file if given)")
    r.add_argument("--assignments",
                   help="where the student release goes (default: assignments, beside --config's file if given)")
    r.set_defaults(func=cmd_release)

    gs = sub.add_parser("gradescope", help="Gradescope: build the autograder zip")
    gs_sub = gs.add_subparsers(dest="gradescope_command", required=True, parser_class=Parser)
    b = gs_sub.add_parser("build", help="write the autograder zip Gradescope expects (setup.sh, run_autograder, ...)")
    b.add_argument("--out", default="autograder.zip", help="where to write the zip (default: autograder.zip)")
    b.add_argument("--config", default="grading.yaml", help="the grading policy to ship (default: grading.yaml)")
    b.add_argument("--secret-file", help="the hidden-case secret to ship (else $GRADER_SECRET; none: no hidden cases)")
    b.add_argument("--torch", help="pip requirement for torch in setup.sh (default: torch==2.13.0)")
    b.add_argument("--torch-index-url", help="where setup.sh gets torch (default: the PyTorch CPU index)")
    b.add_argument("--python", default="python3", help="the Python setup.sh installs with apt (default: python3)")
    b.set_defaults(func=cmd_gradescope_build)

    s = sub.add_parser("schema", help="print the report's JSON Schema")
    s.add_argument("--out", help="write it to this file instead")
    s.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (UsageError, ConfigError) as err:
        print(f"grader: error: {one_line(err)}", file=sys.stderr)  # may name a student's file: escaped
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("grader: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The `grader` command. After `grade`, skip the interpreter's teardown (with torch loaded it costs
    about a fifth of a grade): the report is written and closed, and the workers are gone."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] == ["grade"]:
        from grader.sandbox import prestart

        prestart.discard()  # a prestarted worker the grade did not adopt (it stopped before running one)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            pass
        os._exit(code)
    raise SystemExit(code)
