"""The grading process's handle on a fork server (grader.sandbox.inside.forkserver): one job slot of a batch.

A slot owns a folder (`inputs/`, `submission/`, `cwd/`, `lib/`) that its
sandboxed server sees, and runs one submission at a time there: `stage()`
puts a submission in (after emptying what the previous one left), and
`session()` asks the server to fork that submission's worker. The Session
it returns is what grader.sandbox.runner drives, exactly like a WorkerProcess.
A server that dies, stops answering or cannot clean up after a session is
killed with its whole sandbox and replaced; so is one that says a session
changed its limits or priorities (`tampered`, which batch grading reads to
grade that submission again). Each slot's sandbox runs in a cgroup of its
own where the machine offers one (grader.sandbox.cgroups): its tasks are capped and
it gets a fair share of the CPU. Without one, a grader running as root gives
each slot a user of its own, so that RLIMIT_NPROC counts that slot's tasks only.
"""

import itertools
import logging
import os
import select
import shutil
import time
from pathlib import Path

from grader.phases import phase
from grader.sandbox import cgroups
from grader.sandbox.capture import CappedStream
from grader.sandbox.inside.channel import pipe
from grader.sandbox.inside.forkserver import receive, send, socketpair
from grader.sandbox.handle import STARTUP_TIMEOUT, WorkerChannel, describe_exit, kill_group
from grader.sandbox.levels import Mounts, drops_root, make_readable, prepare, stage_package, start_worker
from grader.sandbox.warm import PLAN as WARM_UP_PLAN, build_warm_up, write_warm_up

REPLY_WAIT = 10.0  # seconds for the server to answer a request
SLOT_UIDS = 1_900_000_000  # without a cgroup, root runs each slot as a user of its own from here on
_slot_numbers = itertools.count()
log = logging.getLogger(__name__)


class Slot:
    @classmethod
    def open_all(cls, roots: list[Path], level: str, config) -> list["Slot"]:
        """Several slots, every server started before any warm-up plan is written (each waits for its own)."""
        slots = []
        try:
            for root in roots:
                slots.append(cls(root, level, config, warm_up=False))
            built = build_warm_up(config)  # once: the same plan and inputs for every slot
            for slot in slots:
                slot.write_warm_up(built)
        except BaseException:
            for slot in slots:
                slot.close()
            raise
        return slots

    def __init__(self, root: Path, level: str, config, warm_up: bool = True):
        self.root = Path(root)
        self.level = level
        self.config = config
        for folder in ("inputs", "submission", "cwd"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.mounts = prepare(Mounts(inputs=self.root / "inputs", submission=self.root / "submission",
                                     cwd=self.root / "cwd", lib=stage_package(self.root / "lib")))
        self.written: dict[str, dict] = {}  # public input files already in inputs/ (grader.sandbox.runner fills it)
        self.sessions = 0
        self.starts = 0
        self.proc = None
        self.tampered: list[str] = []  # what the last session changed in its server (empty: nothing)
        self.group = cgroups.create(f"grader-{os.getpid()}-{self.root.parent.name}-{self.root.name}")
        self.uid = None  # without a group: a user of its own, whose task count RLIMIT_NPROC caps
        if self.group is None and drops_root(level):
            self.uid = SLOT_UIDS + (os.getpid() % 1_000_000) * 100 + next(_slot_numbers) % 100
        self.tasks = "not capped: no pids cgroup available to this user"  # for the report, once started
        self.closed = False
        # The server starts first: the warm-up plan (the course's exercises) takes this process's torch
        # import to write, and the server reads it only once it has imported torch itself, when told.
        self.warm_up = self.mounts.inputs / WARM_UP_PLAN
        self.warm_up_written = False
        self.start()
        if warm_up:
            self.write_warm_up()

    def write_warm_up(self, built: tuple[bytes, dict] | None = None) -> None:
        write_warm_up(self.mounts.inputs, self.config, built)
        make_readable(self.mounts.inputs)
        self.warm_up_written = True
        self._say_warm_up_written()

    def start(self) -> None:
        """Start the server (it imports torch while the caller does other work)."""
        if self.closed:  # the batch is over (or interrupted): a session ending now must not start another
            raise RuntimeError("this job slot is closed")
        ours, theirs = socketpair()
        args = ["--serve", str(theirs.fileno()), "--warm-up", str(self.warm_up)] + (
            ["--wipe-tmp"] if self.level == "bwrap" else [])
        try:
            self.proc = start_worker(self.level, self.config.limits, self.mounts, args, (theirs.fileno(),),
                                     join=self.group.join if self.group is not None else None, uid=self.uid,
                                     nproc=cgroups.TASKS_PER_SLOT if self.uid is not None else None)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.ready = False
        self.starts += 1
        if self.warm_up_written:  # a restart: the plan is there
            self._say_warm_up_written()
        if self.group is not None and self.group.holds(self.proc.pid):
            self.tasks = self.group.describe()
        elif self.uid is not None:
            self.tasks = (f"RLIMIT_NPROC: at most {cgroups.TASKS_PER_SLOT} processes and threads per slot, "
                          f"which runs as a user of its own (uid {self.uid}); no cgroup, so no fair share of the CPU")
        # The server's own output (never a submission's: sessions print into pipes of their own).
        self.log = [CappedStream(self.proc.stdout, 8192), CappedStream(self.proc.stderr, 8192)]

    def _say_warm_up_written(self) -> None:
        try:
            send(self.sock, {"type": "warm_up"})
        except OSError:
            pass  # the server is gone: the next session restarts it

    def _receive(self, deadline: float) -> dict | None:
        """The next control message; None if the server is gone or silent past `deadline`."""
        try:
            if not select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return None
            message, fds = receive(self.sock)
        except OSError:
            return None
        for fd in fds:
            os.close(fd)
        return message

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            self.restart()
        if not self.ready:
            message = self._receive(time.monotonic() + timeout)
            self.ready = message is not None and message.get("type") == "ready"
            if self.ready and message.get("cold"):  # the server said which exercises did not warm up
                log.warning("fork server: exercises %s did not warm up (their sessions start cold)",
                            ", ".join(map(str, message["cold"])))
        return self.ready

    def session(self, plan_path: Path, max_total: int = 1 << 30) -> "Session":
        """Fork the staged submission's worker; a Session that never says hello if the server cannot."""
        for attempt in range(2):
            if attempt:
                self.restart()
            with phase("wait for server"):  # its start (a torch import), or a restart: the batch's fixed cost
                ready = self.wait_ready()
            if not ready:
                continue
            self.sessions += 1
            pipes = [pipe(), pipe(), os.pipe(), os.pipe()]  # answer channel, go, stdout, stderr
            theirs = (pipes[0][1], pipes[1][0], pipes[2][1], pipes[3][1])
            ours = (pipes[0][0], pipes[1][1], pipes[2][0], pipes[3][0])
            try:
                send(self.sock, {"type": "session", "id": self.sessions, "plan": str(plan_path)}, theirs)
                reply = self._receive(time.monotonic() + REPLY_WAIT)
            except OSError:
                reply = None
            finally:
                for fd in theirs:
                    os.close(fd)
            if reply is not None and reply.get("type") == "started" and reply.get("id") == self.sessions:
                return Session(self, self.sessions, ours, max_total)
            for fd in ours:
                os.close(fd)
            self.ready = False
        return Session(self, None, None, max_total)

    def restart(self) -> None:
        self._stop()
        self.start()

    def close(self) -> None:
        """Kill the server and its sandbox (any session goes with it), and remove the slot's cgroup."""
        self.closed = True
        self._stop()
        if self.group is not None:
            self.group.remove()

    def _stop(self) -> None:
        if self.proc is None:
            return
        kill_group(self.proc)
        self.sock.close()
        for stream in self.log:
            stream.join(1)
        self.proc = None

    def stage(self, submission) -> Path:
        """Make a loaded submission (grader.submission.load.Submission) the only one in the slot."""
        self.clear()
        folder = submission.stage(self.mounts.submission)
        make_readable(folder)
        return folder

    def clear(self) -> None:
        """Empty the submission folder and remove the plans: the next submission finds nothing of this one."""
        for entry in self.mounts.submission.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for plan in self.mounts.inputs.glob("plan-*"):
            plan.unlink()


class Session(WorkerChannel):
    """One submission's worker, forked by the slot's server: driven by grader.sandbox.runner like a WorkerProcess."""

    def __init__(self, slot: Slot, sid: int | None, pipes: tuple[int, int, int, int] | None, max_total: int):
        self.slot = slot
        self.sid = sid
        self.status: int | None = None  # the session's wait status, once the server reports its end
        self.ended = sid is None
        self.clean = True
        self.tampered: list[str] = []  # what the server found changed in itself after this session
        if pipes is None:  # no session: a worker whose channel and output are already closed
            channel_r, channel_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            for fd in (channel_w, out_w, err_w):
                os.close(fd)
            go_w = None
        else:
            channel_r, go_w, out_r, err_r = pipes
            os.set_blocking(go_w, False)
        super().__init__(channel_r, go_w, os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"),
                         slot.config.limits.output_bytes, max_total)

    def _await_ended(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ended:
            message = self.slot._receive(deadline)
            if message is None:
                return
            if message.get("type") == "ended" and message.get("id") == self.sid:
                self.ended = True
                self.clean = message.get("clean") is True
                tampered = message.get("tampered")
                self.tampered = [str(t)[:40] for t in tampered[:20]] if isinstance(tampered, list) else ["reply"]
                self.status = message["status"] if type(message.get("status")) is int else None

    def kill(self) -> None:
        """End the session and everything it started; replace the server if it cannot confirm a clean end."""
        if not self.ended:
            try:
                send(self.slot.sock, {"type": "kill", "id": self.sid})
            except OSError:
                pass
            self._await_ended(REPLY_WAIT)
        if self.tampered:
            self.slot.tampered = self.tampered
        if not self.ended or not self.clean or self.tampered:
            self.slot.restart()  # the next submission gets a server no one has touched
        self._close()

    def exit_description(self) -> str:
        memory_mb = self.slot.config.limits.memory_mb
        if self.sid is None:
            return "could not be started by the fork server"
        self._await_ended(2)
        if self.status is None:
            return describe_exit(None, memory_mb)
        if os.WIFSIGNALED(self.status):
            return describe_exit(-os.WTERMSIG(self.status), memory_mb)
        return describe_exit(os.WEXITSTATUS(self.status), memory_mb)
