"""A worker's session: the sandboxed process that runs student code, one child process per exercise.

Started by the grading process (inside whatever isolation it chose) as
`python -m grader.sandbox.inside PLAN --channel FD [--go FD] [--drop-to UID]` (see __main__.py; for
batch grading, as a fork server with `--serve FD`: see grader.sandbox.inside.forkserver,
whose sessions run `run_session` below). It
drops root first if asked, imports torch, says hello, waits for the go
signal (so that its start overlaps with the grader's own), locks autograd
out, then for each exercise forks a child that confines itself (syscall
filter), imports the student's module and answers each case on a pipe of
its own. The worker never runs student code itself: it relays only
well-formed answers for that exercise to the grader's channel, enforces the
exercise's wall-clock timeout, and says how a child ended if it did not
finish. So a crash, a hang, an `os._exit`, a monkeypatched torch or garbage
on the pipe costs only that exercise, and monkeypatching never reaches the
next one.

Hidden cases run after every public case, in children that cannot print
(see Zygote): the child that ran an exercise's public cases when the Zygote
could verify it from outside (grader.sandbox.inside.confine.Paused), a fresh quiet
one otherwise. Nothing is written to stdout: whatever the student prints
there is only captured output.
"""

import gc
import json
import os
import shutil
import signal
import sys
import time

from grader.sandbox.inside import channel, confine
from grader.sandbox.inside.verdicts import _quiet_result, hidden_attempt, hidden_frames

MAX_META = 64 << 10     # one frame's JSON from a child: notes and a traceback
MAX_FINDINGS = 20       # runtime integrity reports relayed per exercise
EXIT_GRACE = 1.0        # seconds for a child to be reaped after its pipe closed
MAX_HIDDEN = 1 << 30    # bytes of hidden inputs the grader may send
HIDDEN_WAIT = 60.0      # seconds for the grader to send them

# Taken before any student code runs, which may rebind os._exit and friends.
_exit, _kill, _getpid = os._exit, os.kill, os.getpid


def receive_inputs(go_fd: int) -> list[tuple[str, bytes]] | None:
    """Case tensors sent down the go pipe after its `g` (never through a file), added to what was preloaded.

    Hidden cases' inputs come this way, and the public cases' private inputs (autograd's answers that one
    exercise gets as an input: an input file would let another exercise's child read them). None if the
    grader did not send.
    """
    from grader.sandbox.inside import harness

    reader = channel.FrameReader(go_fd, max_meta=4096, max_total=MAX_HIDDEN)
    try:
        if os.read(go_fd, 1) != b"g":
            return None
        received = harness.read_inputs(reader, time.monotonic() + HIDDEN_WAIT)
    except (OSError, channel.ProtocolError, channel.Timeout):
        return None
    for file, data in received or ():
        harness.add_inputs(file, data)
    return received


def describe_end(status: int, memory_mb: int) -> str:
    """How a child ended without finishing, for a learner."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        if name == "SIGXCPU":
            return "used up its CPU time limit (an infinite loop, or far too slow)"
        hint = (f"; this often means it ran out of memory (limit {memory_mb} MB)"
                if name in ("SIGKILL", "SIGSEGV", "SIGABRT", "SIGBUS") else "")
        return f"crashed (killed by {name}){hint}"
    return f"exited (code {os.WEXITSTATUS(status)}) before returning all its answers"


class Zygote:
    """Forks a child per exercise (and one more for a hidden phase it cannot verify); relays what they send.

    Phase one runs every exercise on the public cases. Only then does the
    grader send the hidden cases' inputs (asked for with `need_hidden`, down
    the go pipe: they are never in a file), and phase two runs every exercise
    that got through phase one on them, in children whose output goes nowhere and
    whose messages are reduced to what the report may show. So no process
    that can print ever holds hidden inputs.

    Phase two reuses the phase-one child when, after its public cases, it
    gave up its output and paused, and the Zygote verified that from outside
    and stopped it (confine.Paused: its fds, tasks and context switches, read
    in /proc; nothing the child says is trusted). From its `ready_hidden` on,
    every frame of that child is relayed as a quiet one, by the Zygote's own
    switch. If a check fails, the child is killed and a fresh quiet child
    forked from this process runs the hidden cases as before. The Zygote holds
    no hidden data while any child that can print is alive.
    """

    def __init__(self, plan: dict, channel_fd: int, go_fd: int | None):
        self.plan = plan
        self.fd = channel_fd
        self.go_fd = go_fd
        self.cwd = plan["cwd"]
        self.spent: dict[str, float] = {}
        self.failed: set[str] = set()  # exercises whose child reported an exercise-level error (an import error)
        self.paused: dict[str, confine.Paused] = {}  # exercise id -> its child, stopped, waiting for hidden inputs

    def send(self, meta: dict, blob: bytes = b"") -> None:
        channel.send(self.fd, meta, blob)

    def run(self) -> None:
        public = [c for c in self.plan["cases"] if not c.get("hidden")]
        hidden = [c for c in self.plan["cases"] if c.get("hidden")]
        keep = hidden if self.go_fd is not None else []  # which cases a public child may pause for
        passed = [ex for ex in self.plan["exercises"]
                  if not public or self.run_phase(ex, public, quiet=False, keep=keep)]
        try:
            if hidden and passed and self.hidden_inputs_ready():
                for exercise in passed:
                    child = self.paused.pop(exercise["id"], None)
                    if child is None or not self.run_phase(exercise, hidden, quiet=True, child=child):
                        self.run_phase(exercise, hidden, quiet=True)
        finally:
            for child in self.paused.values():
                child.kill()
        self.send({"type": "done"})

    def hidden_inputs_ready(self) -> bool:
        """Ask the grader for the hidden cases' inputs; they come down the go pipe, never through a file.

        Only this process (which runs no student code) holds them until the hidden-phase children fork.
        """
        if self.go_fd is None:
            return False
        self.send({"type": "need_hidden"})
        return receive_inputs(self.go_fd) is not None

    def run_phase(self, exercise: dict, cases: list[dict], quiet: bool, keep=(), child=None) -> bool | None:
        """One exercise on `cases`, bracketed by start and end frames; False if the child failed.

        With `keep` (the hidden cases), a child that finishes may pause for them; with `child` (a paused
        one), the phase runs in it, or returns None at once (no frame sent) if it can no longer be trusted.
        """
        ex_id = exercise["id"]
        if child is not None and not child.still_sealed():
            child.kill()
            return None
        self.send({"type": "exercise_start", "exercise": ex_id})
        started = time.monotonic()
        budget = max(1.0, self.plan["timeout"] - self.spent.get(ex_id, 0.0))
        ok = self.run_child(exercise, cases, quiet, started + budget, keep, child)
        self.spent[ex_id] = self.spent.get(ex_id, 0.0) + time.monotonic() - started
        self.clean()
        self.send({"type": "exercise_end", "exercise": ex_id})
        return ok

    def clean(self) -> None:
        """Empty the working directory, so one exercise's files never reach the next."""
        try:
            entries = os.listdir(self.cwd)
        except OSError:
            return
        for name in entries:
            path = os.path.join(self.cwd, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def max_blob(self, exercise: dict, cases: list[dict]) -> int:
        keys = len(expected_keys(exercise))
        return keys * 8 * max(c["max_numel"] for c in cases) + (1 << 16)

    def run_child(self, exercise: dict, cases: list[dict], quiet: bool, deadline: float, keep=(),
                  child: "confine.Paused | None" = None) -> bool:
        """Run `cases` of `exercise` in a fresh child (or the paused `child`); False if it did not finish them."""
        ex_id = exercise["id"]
        resumed = True
        if child is not None:
            pid, read_fd = child.pid, child.chan
            resumed = child.resume(hidden_frames(exercise, cases), deadline)  # False: it did not read them in time
        else:
            read_fd, write_fd = os.pipe()
            hidden_read, hidden_write = os.pipe() if keep else (None, None)
            inherited = (self.fd, self.go_fd, read_fd, hidden_write,
                         *(fd for other in self.paused.values() for fd in other.fds()))
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:
                child_main(self.plan, exercise, cases, write_fd, quiet, inherited, parent, keep, hidden_read)
            os.close(write_fd)
            if keep:
                os.close(hidden_read)
                child = confine.Paused(pid, read_fd, hidden_write)
        reader = channel.FrameReader(read_fd, max_meta=MAX_META, max_blob=self.max_blob(exercise, cases),
                                     max_total=(len(cases) + 2) * (self.max_blob(exercise, cases) + MAX_META))
        outcome = self.relay(reader, ex_id, {c["name"] for c in cases}, deadline, quiet, expected_keys(exercise),
                             pause=bool(keep)) if resumed else "timeout"
        if outcome in ("paused", "unpaused"):
            if outcome == "paused" and ex_id not in self.failed and child.seal(reader, deadline):
                self.paused[ex_id] = child
            else:
                child.kill()
            return ex_id not in self.failed
        if child is not None:
            child.close()
        else:
            os.close(read_fd)
        status = self.reap(pid, killed=outcome != "eof")
        if outcome == "done":
            # Failed as a whole (e.g. on import): the hidden cases would fail the same way, and their
            # masked message must not replace the real error, file and line.
            return ex_id not in self.failed
        if outcome == "timeout":
            error = {"status": "timeout",
                     "message": f"did not finish within {self.plan['timeout']:g} s (an infinite loop, or far too slow)"}
        elif outcome == "eof":
            error = {"status": "crashed", "message": describe_end(status, self.plan["memory_mb"])}
        else:
            error = {"status": "crashed", "message": f"sent garbled data to the grader ({outcome})"}
        self.send({"type": "exercise_error", "exercise": ex_id, **error})
        return False

    def reap(self, pid: int, killed: bool) -> int:
        """Wait for the child (killing it if it lingers); its wait status."""
        if not killed:
            end = time.monotonic() + EXIT_GRACE
            while time.monotonic() < end:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return status
                time.sleep(0.001)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return os.waitpid(pid, 0)[1]

    def relay(self, reader: channel.FrameReader, ex_id: str, names: set[str], deadline: float, quiet: bool,
              expected: set[str], pause: bool = False) -> str:
        """Pass the child's frames on; 'done', 'eof', 'timeout' or what was garbled; with `pause`, 'paused'
        when `ready_hidden` follows its `child_done` ('unpaused' if anything else does).

        From a quiet (hidden-case) child only verdict-bearing fields pass: its messages could carry
        hidden inputs, and the report shows hidden cases by status only.
        """
        seen: set[str] = set()
        findings = errors = 0
        done = False
        while True:
            try:
                frame = reader.read(deadline)
            except channel.Timeout:
                return "timeout"
            except channel.ProtocolError as err:
                return str(err)
            if frame is None:
                return "done" if done else "eof"
            meta, blob = frame
            kind, case = meta.get("type"), meta.get("case")
            if done and pause:
                return "paused" if meta == {"type": "ready_hidden"} and not blob else "unpaused"
            if done or not isinstance(kind, str):
                continue
            if kind == "result" and isinstance(case, str) and case in names and case not in seen:
                seen.add(meta["case"])
                self.send({**(_quiet_result(meta, expected) if quiet else meta), "exercise": ex_id}, blob)
            elif kind == "exercise_error" and not errors:
                errors += 1
                self.failed.add(ex_id)
                if quiet:
                    meta = {"status": "error", "message": "failed on the hidden cases (details stay hidden)"}
                self.send({**meta, "type": "exercise_error", "exercise": ex_id})
            elif kind == "integrity" and quiet:
                if not findings:
                    findings += 1
                    self.send(hidden_attempt(ex_id))
            elif kind == "integrity" and findings < MAX_FINDINGS:
                findings += 1
                self.send({"type": "integrity", "exercise": ex_id,
                           **{k: meta.get(k) for k in ("pattern", "file", "line", "message")}})
            elif kind == "child_done":
                done = True



def expected_keys(exercise: dict) -> set[str]:
    """The answer keys an exercise's child can send back: its gradients, and a trajectory check's parameters
    after each step (and, for the lecture notebook's loop, grader.sandbox.inside.train_loop, its gradients)."""
    keys = set(exercise.get("gradient_checks", ()))
    for check in exercise.get("checks", ()):
        if isinstance(check, dict) and check.get("kind") == "trajectory":
            steps, params = range(int(check.get("steps", 0))), [str(p) for p in check.get("params", ())]
            keys |= {f"{kind}{i}.{k}" for kind in ("step", "grad") for i in steps for k in params}
    return keys


def child_main(plan: dict, exercise: dict, cases: list[dict], fd: int, quiet: bool, inherited, parent: int,
               keep=(), hidden_fd: int | None = None) -> None:
    """In the forked child: confine, then run the student's function (then, with `hidden_fd`, pause for the
    hidden cases `keep`: grader.sandbox.inside.confine.Paused). Never returns."""
    code = 0
    try:
        for inherited_fd in inherited:  # only the child's own pipe stays reachable
            if inherited_fd is not None:
                os.close(inherited_fd)
        if quiet:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
        confine.die_with_parent(parent)
        confine.set_dumpable(True)  # its own /proc entries; the worker above stays undumpable
        confine.install_filter()
        from grader.sandbox.inside import guard, harness

        harness.restrict(exercise)  # only this exercise's own inputs stay in this process
        guard.submission = plan["submission"]
        guard.report = lambda finding: channel.send(fd, {"type": "integrity", **finding})
        sys.path.insert(0, plan["submission"])
        harness.Harness(plan, fd).run_exercise(exercise, cases)
        channel.send(fd, {"type": "child_done"})
        if hidden_fd is not None and harness.pause(fd, hidden_fd):
            harness.Harness(plan, fd).run_exercise(exercise, keep)
            channel.send(fd, {"type": "child_done"})
    except BaseException:  # noqa: BLE001 - a broken pipe, or the grader's own bug: say so, then go
        code = 70
        try:
            import traceback

            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        _exit(code)  # skip atexit hooks a submission may have registered
        _kill(_getpid(), signal.SIGKILL)  # never fall back into the worker's own code


def _add_private(received) -> None:
    """The public cases' private part, again after preloading (which replaced each file's tensors); in a frame of
    its own, so no local of the session's frame (which every exercise child inherits) holds a blob."""
    from grader.sandbox.inside import harness

    for file, data in received:
        harness.add_inputs(file, data)


def run_session(plan_path: str, channel_fd: int, go_fd: int | None) -> None:
    """One submission's worker, torch already imported: hello, wait for go, then the Zygote. Never returns.

    A fresh worker process runs this once; a fork server (grader.sandbox.inside.forkserver) runs it in a child per submission.
    """
    import torch

    from grader.sandbox.inside import guard, harness

    channel.send(channel_fd, {"type": "hello", "pid": os.getpid()})
    private = receive_inputs(go_fd) if go_fd is not None else None  # go: the plan and public inputs are written
    with open(plan_path) as fh:
        plan = json.load(fh)
    torch.set_default_dtype({"float64": torch.float64, "float32": torch.float32}[plan["dtype"]])
    if plan.get("mode") == "execute":
        # The whole notebook in a Jupyter kernel (a process of its own, over sockets): only the
        # sandbox and the rlimits apply. It never changes the score, so autograd is not locked out.
        from grader.sandbox.inside.nbrun import run_notebook

        run_notebook(plan, channel_fd)
        os._exit(0)
    kernels = guard.install()  # noqa: F841 - the kernel blocks last as long as this frame (it never returns)
    confine.set_dumpable(False)  # children cannot read or write this process through /proc
    os.chdir(plan["cwd"])
    for case in plan["cases"]:  # read once here (or by the fork server), not once per exercise child
        if not case.get("hidden"):
            harness.preload(case["file"], path=os.path.join(plan["inputs"], case["file"]))
    _add_private(private or ())
    private = None  # noqa: F841 - autograd's dhpreact and demb: no frame of this process may keep them
    gc.freeze()  # children do not copy this process's memory just to garbage-collect it
    Zygote(plan, channel_fd, go_fd).run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
