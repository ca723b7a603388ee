"""`grader` command line. Exit codes: 0 report written, 1 under --min-score, 2 usage or config error."""

import argparse
import os
import sys
from pathlib import Path

from grader import __version__
from grader.config import ConfigError, load_config

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


def read_secret(secret_file: str | None) -> str | None:
    if secret_file:
        try:
            secret = Path(secret_file).read_text().strip()
        except OSError as err:
            raise ConfigError(f"cannot read the secret file {secret_file}: {err.strerror}") from None
        if not secret:
            raise ConfigError(f"the secret file {secret_file} is empty")
        return secret
    return os.environ.get("GRADER_SECRET") or None


def cmd_grade(args) -> int:
    from grader.grading import grade
    from grader.report import write_report
    from grader.submission import SubmissionError

    config = load_config(args.config)
    secret = read_secret(args.secret_file)
    try:
        report = grade(Path(args.path), config, secret=secret, timeout=args.timeout,
                       isolation=args.isolation, student_id=args.student_id)
    except SubmissionError as err:
        raise ConfigError(str(err)) from None
    write_report(report, Path(args.out))
    if not args.quiet:
        from grader.terminal import print_report

        print_report(report)
        print(f"report written to {args.out}")
    if args.min_score is not None and report.score < args.min_score:
        if not args.quiet:
            print(f"score {report.score:g} is below --min-score {args.min_score:g}", file=sys.stderr)
        return EXIT_BELOW_MIN
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
    g.add_argument("path", help="the submission: a folder or a .zip")
    g.add_argument("--out", default="report.json", help="where to write the JSON report (default: report.json)")
    g.add_argument("--config", default="grading.yaml", help="the grading policy (default: grading.yaml)")
    g.add_argument("--timeout", type=_positive, help="seconds per exercise (overrides grading.yaml)")
    g.add_argument("--secret-file", help="file holding the hidden-case secret (else $GRADER_SECRET)")
    g.add_argument("--min-score", type=float, help="exit 1 when the score (in points) is below this")
    g.add_argument("--isolation", choices=["auto", "bwrap", "unshare", "process"], help="force an isolation level")
    g.add_argument("--student-id", help="recorded in the report")
    g.add_argument("--quiet", action="store_true", help="print nothing; only write the report")
    g.set_defaults(func=cmd_grade)

    s = sub.add_parser("schema", help="print the report's JSON Schema")
    s.add_argument("--out", help="write it to this file instead")
    s.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (UsageError, ConfigError) as err:
        print(f"grader: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("grader: interrupted", file=sys.stderr)
        return 130
