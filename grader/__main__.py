"""`grader ...` and `python -m grader ...`: for `grade`, the worker starts before the grader's own imports."""

import sys

from grader.phases import mark


def main() -> None:
    mark("python started")
    from grader.sandbox import prestart

    prestart.start(sys.argv[1:])  # `grade`: the worker first (grader.sandbox.prestart)
    from grader.cli import run

    run()


if __name__ == "__main__":
    main()
