"""A worker's session: the sandboxed process that runs student code, in child processes it forks.

Started by the grading process (inside whatever isolation it chose) as
`python -m grader.sandbox.inside PLAN --channel FD [--go FD] [--drop-to UID]` (see __main__.py; for
batch grading, as a fork server with `--serve FD`: see grader.sandbox.inside.forkserver,
whose sessions run `run_session` below). It
drops root first if asked, imports torch, says hello, waits for the go
signal (so that its start overlaps with the grader's own), locks autograd
out, then forks children that confine themselves (syscall filter), import
the student's modules and answer each case on a pipe of their own: one per
exercise, or one for a group of exercises that the grader found may share
one (grader.sandbox.sharing: no monkeypatching possible, and autograd's
answers given as inputs reach a member only after the others before it
answered, followed only by members they give nothing away to). The worker
never runs student code itself: it relays only well-formed answers for the
exercise in progress to the grader's channel, enforces each exercise's
wall-clock timeout, and says how a child ended if it did not finish. So a
crash, a hang, an `os._exit` or garbage on the pipe costs only that exercise
(the rest of its group runs in a fresh child), and a submission that could
monkeypatch runs every exercise alone.

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
from grader.sandbox.inside.verdicts import _quiet_result, expected_keys, hidden_attempt, hidden_frames

MAX_META = 64 << 10     # one frame's JSON from a child: notes and a traceback
MAX_FINDINGS = 20       # runtime integrity reports relayed per exercise
EXIT_GRACE = 1.0        # seconds for a child to be reaped after its pipe closed
MAX_HIDDEN = 1 << 30    # bytes of hidden inputs the grader may send
HIDDEN_WAIT = 60.0      # seconds for the grader to send them


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
        received = channel.read_inputs(reader, time.monotonic() + HIDDEN_WAIT)
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
    """Forks a child per exercise or group (and one more per exercise for a hidden phase it cannot verify);
    relays what they send.

    A group's child runs its members one after another, each when the Zygote
    says (after it relayed the last one and emptied the working directory),
    with that member's piped inputs sent only then.

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
        self.shared: confine.Paused | None = None  # a group's child, waiting for its next exercise's public cases

    def send(self, meta: dict, blob: bytes = b"") -> None:
        channel.send(self.fd, meta, blob)

    def run(self) -> None:
        public = [c for c in self.plan["cases"] if not c.get("hidden")]
        hidden = [c for c in self.plan["cases"] if c.get("hidden")]
        keep = hidden if self.go_fd is not None else []  # which cases a public child may pause for
        groups = self.groups()
        passed = [ex for group in groups for ex in (self.run_group(group, public, keep) if public else group)]
        try:
            if hidden and passed and self.hidden_inputs_ready():
                for group in groups:
                    self.run_hidden([ex for ex in group if ex in passed], hidden)
        finally:
            for child in {id(c): c for c in self.paused.values()}.values():
                child.kill()
        self.send({"type": "done"})

    def groups(self) -> list[list[dict]]:
        """The exercises in running order, in the groups the grader chose to share a child
        (grader.sandbox.sharing), checked again here: plain module exercises, each once, and after a member
        with private inputs only those it names safe for them. Any other exercise runs alone."""
        by_id = {ex["id"]: ex for ex in self.plan["exercises"]}
        order: list[list[dict]] = []
        for ids in self.plan.get("groups") or ():
            members = [by_id.pop(i) for i in dict.fromkeys(ids) if i in by_id]
            alone = any(ex.get("mode") for ex in members) or any(
                later["id"] not in ex.get("private_inputs_safe_for", ()) for i, ex in enumerate(members)
                if ex.get("private_inputs") for later in members[i + 1:])
            order += [[ex] for ex in members] if alone else [members] if members else []
        return order + [[ex] for ex in by_id.values()]

    def run_group(self, group: list[dict], cases: list[dict], keep) -> list[dict]:
        """A group's public cases, one exercise after another in one child while it lasts (a fresh one for the
        rest if it dies or hangs); the exercises that got through."""
        passed = [ex for i, ex in enumerate(group)
                  if self.run_phase(ex, cases, quiet=False, keep=keep, group=group[i:])]
        if self.shared is not None:  # it stopped short of its last member: never left waiting
            self.shared.kill()
            self.shared = None
        return passed

    def run_hidden(self, members: list[dict], cases: list[dict]) -> None:
        """The hidden cases of a group's exercises that got through: in the child that ran them, once sealed,
        one after another; in a fresh quiet child each where that cannot be."""
        for i, exercise in enumerate(members):
            child = self.paused.pop(exercise["id"], None)
            more = child is not None and any(self.paused.get(m["id"]) is child for m in members[i + 1:])
            if child is None or not self.run_phase(exercise, cases, quiet=True, child=child, more=more):
                if child is not None:
                    child.kill()
                    self.paused = {k: c for k, c in self.paused.items() if c is not child}
                self.run_phase(exercise, cases, quiet=True)

    def hidden_inputs_ready(self) -> bool:
        """Ask the grader for the hidden cases' inputs; they come down the go pipe, never through a file.

        Only this process (which runs no student code) holds them until the hidden-phase children fork.
        """
        if self.go_fd is None:
            return False
        self.send({"type": "need_hidden"})
        return receive_inputs(self.go_fd) is not None

    def run_phase(self, exercise: dict, cases: list[dict], quiet: bool, keep=(), child=None, group=(),
                  more: bool = False) -> bool | None:
        """One exercise on `cases`, bracketed by start and end frames; False if the child failed.

        With `keep` (the hidden cases), a child that finishes may pause for them; with `child` (a paused
        one), the phase runs in it, or returns None at once (no frame sent) if it can no longer be trusted;
        `more`: that child runs more exercises after this one. `group`: this exercise and the rest of its
        group, which a child forked now runs one after another.
        """
        ex_id = exercise["id"]
        if child is not None and not child.running and not child.still_sealed():
            child.kill()
            return None
        self.send({"type": "exercise_start", "exercise": ex_id})
        started = time.monotonic()
        budget = max(1.0, self.plan["timeout"] - self.spent.get(ex_id, 0.0))
        ok = self.run_child(exercise, cases, quiet, started + budget, keep, child, group, more)
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
                  child: "confine.Paused | None" = None, group=(), more: bool = False) -> bool:
        """Run `cases` of `exercise` in a fresh child (for `group`), the group's waiting child or the paused
        `child`; False if it did not finish them."""
        ex_id = exercise["id"]
        resumed = True
        members = list(group) or [exercise]
        if child is not None:  # paused for the hidden cases (and still running them, after its first)
            pid, read_fd = child.pid, child.chan
            frames = hidden_frames(exercise, cases)
            resumed = child.send(frames, deadline) if child.running else child.resume(frames, deadline)
            if not more:
                child.close_input()  # nothing more for it: it ends after this exercise
        elif self.shared is not None:  # a group's child, waiting: this exercise's piped inputs, then its turn
            child, self.shared = self.shared, None
            pid, read_fd = child.pid, child.chan
            resumed = child.send(hidden_frames(exercise, cases, piped_only=True), deadline)
        else:
            read_fd, write_fd = channel.pipe()
            hidden_read, hidden_write = channel.pipe() if keep or len(members) > 1 else (None, None)
            inherited = {self.fd, self.go_fd, read_fd, hidden_write,
                         *(fd for other in self.paused.values() for fd in other.fds())}
            from grader.sandbox.inside import harness

            parent = os.getpid()
            pid = os.fork()
            if pid == 0:
                harness.child_main(self.plan, members, cases, write_fd, quiet, inherited, parent, keep, hidden_read)
            os.close(write_fd)
            if hidden_read is not None:
                os.close(hidden_read)
                child = confine.Paused(pid, read_fd, hidden_write, [m["id"] for m in members])
        # Its last exercise: a hidden one with nothing `more`, else the last member it was forked for.
        last = not more if quiet and child is not None else child is None or child.members[-1] == ex_id
        reader = channel.FrameReader(read_fd, max_meta=MAX_META, max_blob=self.max_blob(exercise, cases),
                                     max_total=(len(cases) + 2) * (self.max_blob(exercise, cases) + MAX_META))
        outcome = self.relay(reader, ex_id, {c["name"] for c in cases}, deadline, quiet, expected_keys(exercise),
                             pause=bool(keep) and last, until_done=not last) if resumed else "timeout"
        if outcome == "next":  # done with this one, waiting for its next exercise
            if not quiet:
                self.shared = child
            return ex_id not in self.failed
        if outcome in ("paused", "unpaused"):
            waiting = [m for m in child.members if m not in self.failed]
            if outcome == "paused" and waiting and child.seal(reader, deadline):
                self.paused.update((m, child) for m in waiting)
            else:
                child.kill()
            return ex_id not in self.failed
        if child is not None:
            child.close()
            self.paused = {k: c for k, c in self.paused.items() if c is not child}
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
              expected: set[str], pause: bool = False, until_done: bool = False) -> str:
        """Pass the child's frames on; 'done', 'eof', 'timeout' or what was garbled; with `pause`, 'paused'
        when `ready_hidden` follows its `child_done` ('unpaused' if anything else does); with `until_done`,
        'next' at its `child_done` (a group's child, which then waits for its next exercise).

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
                if until_done:
                    return "next"
                done = True


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
