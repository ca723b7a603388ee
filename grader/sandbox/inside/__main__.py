"""The worker's entry point: `python -m grader.sandbox.inside PLAN --channel FD ...` (built by grader.sandbox.levels).

It refuses every grader module that was not staged into the sandbox, drops root if asked, and becomes
one session (grader.sandbox.inside.session), a fork server (--serve) or a probe (--probe).
"""

import argparse
import os
import sys

from grader.sandbox.inside import confine


class StagedOnly:
    """A meta-path finder that refuses every grader module not staged beside this file.

    The sandbox holds only the worker's modules (grader.sandbox.levels.stage_package); without this an editable
    install's finder would still find the rest (the reference code in grader.course.cases) in the repository.
    """

    def __init__(self, folder: str):
        self.folder = folder  # the staged `grader` folder

    def find_spec(self, name, path=None, target=None):
        parts = name.split(".")
        if parts[0] == "grader" and len(parts) > 1:
            where = os.path.join(self.folder, *parts[1:])
            if not (os.path.isfile(where + ".py") or os.path.isfile(os.path.join(where, "__init__.py"))):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def refuse_unstaged() -> None:
    here = os.path.dirname(os.path.abspath(__file__))  # grader/sandbox/inside
    sys.meta_path.insert(0, StagedOnly(os.path.dirname(os.path.dirname(here))))


def main() -> None:
    refuse_unstaged()
    parser = argparse.ArgumentParser(prog="grader.sandbox.inside")
    parser.add_argument("plan", nargs="?")
    parser.add_argument("--channel", type=int, default=None)
    parser.add_argument("--go", type=int, default=None)
    parser.add_argument("--drop-to", type=int, default=None, help="become this uid first (when started as root)")
    parser.add_argument("--probe", action="store_true", help="check that the worker can start here, then exit")
    parser.add_argument("--serve", type=int, default=None, metavar="FD",
                        help="be a fork server on this control socket (batch grading; see grader.sandbox.inside.forkserver)")
    parser.add_argument("--warm-up", default=None, metavar="PLAN",
                        help="as a fork server: run these exercises once on stand-in inputs before serving")
    parser.add_argument("--wipe-tmp", action="store_true", help="as a fork server: empty /tmp after each session")
    args = parser.parse_args()
    if args.drop_to is not None:
        confine.drop_privileges(args.drop_to)
    confine.prepare_filter()  # once here, not in every exercise child
    # `-m` put the working directory first on sys.path: files a submission writes there must not import.
    sys.path[:] = [p for p in sys.path if p and p != os.getcwd()]
    if args.probe:
        import importlib.util

        os._exit(0 if importlib.util.find_spec("torch") and importlib.util.find_spec("safetensors") else 3)
    if args.serve is not None:
        from grader.sandbox.inside.forkserver import serve

        serve(args.serve, wipe_tmp=args.wipe_tmp, warm_up=args.warm_up)
    import torch  # noqa: F401

    from grader.sandbox.inside import guard, harness  # noqa: F401 - imported once here, inherited by every child
    from grader.sandbox.inside.session import run_session

    # Autograd locked before the hello (about 30 ms): while the grading process still reads the submission
    # and its cases, not after the go. Kept alive by this frame: run_session never returns.
    kernels = guard.install()  # noqa: F841
    run_session(args.plan, args.channel, args.go)


if __name__ == "__main__":
    main()
