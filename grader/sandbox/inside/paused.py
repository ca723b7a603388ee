"""An exercise child kept for its hidden phase: the child's side of the pause, and the Zygote's checks of it.

The child's side (`pause`) runs after the public cases, in a process where
student code ran: nothing it does is trusted. The Zygote's side (`Paused`)
decides from outside, through /proc, whether that child may be given hidden
inputs. The steps and why each is needed:

1. the child closes every fd but its channel and its hidden-input pipe, puts
   /dev/null on 0, 1 and 2, says `ready_hidden` and blocks reading the pipe;
2. the Zygote (no other child is alive then but stopped, sealed ones) checks
   it is asleep, has exactly one task (no thread left running) and that each
   of its fds is /dev/null or one of its two pipes, and that neither pipe
   holds bytes it did not send: so it can no longer print;
3. the Zygote sends a seal byte; the child makes itself undumpable and says
   `sealed`; the Zygote stops it (SIGSTOP), then checks that its /proc fds
   are closed to it now (undumpable: a later child, same uid, can neither
   read its memory, which may hold another exercise's answer, nor reopen its
   pipes), that it still has one task, and notes its context-switch counts;
4. at its hidden phase the Zygote checks it is still stopped, still one task,
   and has not been switched in since (the counts): it ran no code at all,
   so step 2's verdict still holds. Only then SIGCONT and the hidden inputs.

Children can signal only themselves (the syscall filter), so none can wake
or kill a stopped one; if it is gone or any check fails, the Zygote kills it
and grades that exercise's hidden cases in a fresh quiet child instead.
"""

import fcntl
import os
import signal
import struct
import termios
import time

from grader.sandbox.inside import channel, confine

SETTLE = 1.0      # seconds for a child to reach the state the Zygote waits for
SEAL = b"s"
# Bound before student code runs (which may rebind them); the Zygote does not rely on them anyway.
_closerange, _dup2, _open, _close, _read = os.closerange, os.dup2, os.open, os.close, os.read


def pause(fd: int, hidden_fd: int):
    """In the child, public cases done: give up everything that can print, wait to be sealed, then for the
    hidden inputs. True once they are added to harness.PRELOADED; False if the Zygote sent none."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # what the public cases printed still reaches the captured output
        except BaseException:  # noqa: BLE001
            pass
    low, high = sorted((fd, hidden_fd))
    _closerange(3, low)
    _closerange(low + 1, high)
    _closerange(high + 1, 1 << 20)
    devnull = _open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        _dup2(devnull, target)
    if devnull > 2:
        _close(devnull)
    channel.send(fd, {"type": "ready_hidden"})
    if _read(hidden_fd, 1) != SEAL:
        return False
    confine.set_dumpable(False)
    channel.send(fd, {"type": "sealed"})
    from grader.sandbox.inside import harness

    reader = channel.FrameReader(hidden_fd, max_meta=4096, max_total=1 << 30)
    while (frame := reader.read()) is not None:
        meta, blob = frame
        if meta.get("type") == "end":
            return True
        if meta.get("type") == "inputs" and isinstance(meta.get("file"), str):
            harness.add_inputs(meta["file"], blob)
    return False


def status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict; readable for an undumpable process too. Empty if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return dict(line.split(":\t", 1) for line in fh.read().splitlines() if ":\t" in line)
    except OSError:
        return {}


def wait_state(pid: int, states: str) -> dict[str, str]:
    """Its status once its state letter is one of `states` (within SETTLE); empty if not."""
    end = time.monotonic() + SETTLE
    while True:
        info = status(pid)
        if info.get("Threads", "").strip() != "1":
            return {}  # gone, or a thread still runs: no point waiting
        if info.get("State", "?")[:1] in states:
            return info
        if time.monotonic() > end:
            return {}
        time.sleep(0.0002)


def pending(fd: int) -> int:
    """Bytes waiting in the pipe `fd` is an end of (either end)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def only_quiet_fds(pid: int, pipes: set[int]) -> bool:
    """Every fd of `pid` is /dev/null or one of `pipes` (inode numbers)."""
    null = os.stat(os.devnull)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            path = f"/proc/{pid}/fd/{name}"
            link = os.readlink(path)
            if link.startswith("pipe:[") and link.endswith("]"):
                if int(link[6:-1]) not in pipes:
                    return False
                continue
            info = os.stat(path)
            if (info.st_dev, info.st_ino) != (null.st_dev, null.st_ino):
                return False
    except (OSError, ValueError):
        return False
    return True


def undumpable(pid: int) -> bool:
    """Its /proc fds are closed to this process, so to every other child too (same uid, no capabilities).

    With CAP_SYS_PTRACE (root with no sandbox: the `process` level as root) nothing is closed to any child,
    this process included, so there is nothing to verify: accepted as it stands.
    """
    if _can_ptrace_any():
        return True
    try:
        os.listdir(f"/proc/{pid}/fd")
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def _can_ptrace_any() -> bool:
    caps = status(os.getpid()).get("CapEff", "0")
    return bool(int(caps, 16) >> 19 & 1)  # CAP_SYS_PTRACE


class Paused:
    """A child waiting, stopped, for its exercise's hidden inputs; held by the Zygote."""

    def __init__(self, pid: int, chan: int, hidden: int):
        self.pid, self.chan, self.hidden = pid, chan, hidden  # the Zygote's ends: its channel, its input pipe
        self.switches: tuple[str, str] | None = None

    def fds(self) -> tuple[int, int]:
        return self.chan, self.hidden

    def seal(self, reader: channel.FrameReader, deadline: float) -> bool:
        """Steps 2 and 3 (see the module's docstring), right after its `ready_hidden`; False: do not keep it."""
        pipes = {os.fstat(self.chan).st_ino, os.fstat(self.hidden).st_ino}
        if not wait_state(self.pid, "S") or not only_quiet_fds(self.pid, pipes):
            return False
        if pending(self.chan) or pending(self.hidden):
            return False  # it said more than ready_hidden, or wrote its own inputs
        try:
            os.write(self.hidden, SEAL)
            frame = reader.read(deadline)
        except (OSError, channel.ProtocolError, channel.Timeout):
            return False
        if frame is None or frame[0] != {"type": "sealed"} or frame[1]:
            return False
        if not wait_state(self.pid, "S") or pending(self.chan):
            return False
        os.kill(self.pid, signal.SIGSTOP)
        info = wait_state(self.pid, "Tt")
        if not info or not undumpable(self.pid):
            return False
        self.switches = (info.get("voluntary_ctxt_switches"), info.get("nonvoluntary_ctxt_switches"))
        return True

    def still_sealed(self) -> bool:
        """Step 4: stopped all along, never switched in since it was sealed."""
        info = status(self.pid)
        return (self.switches is not None and info.get("State", "?")[:1] in "Tt"
                and info.get("Threads", "").strip() == "1" and undumpable(self.pid)
                and (info.get("voluntary_ctxt_switches"), info.get("nonvoluntary_ctxt_switches")) == self.switches
                and not pending(self.chan) and not pending(self.hidden))

    def resume(self, frames: list[tuple[dict, bytes]], deadline: float) -> bool:
        """SIGCONT, then its hidden inputs down its pipe (never blocking past `deadline`)."""
        os.kill(self.pid, signal.SIGCONT)
        data = memoryview(b"".join(channel.frame_bytes(meta, blob) for meta, blob in frames))
        os.set_blocking(self.hidden, False)
        try:
            while data:
                try:
                    data = data[os.write(self.hidden, data):]
                except BlockingIOError:
                    import select

                    if not select.select([], [self.hidden], [], max(0.0, deadline - time.monotonic()))[1]:
                        return False
        except OSError:
            return False
        finally:
            data = None  # noqa: F841 - no frame of the Zygote keeps hidden bytes once they are sent
        return True

    def close(self) -> None:
        for fd in (self.chan, self.hidden):
            try:
                os.close(fd)
            except OSError:
                pass

    def kill(self) -> None:
        """Gone for good: SIGKILL (works on a stopped process too), reap, close its pipes."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.close()
