"""OS-level confinement applied by the worker to itself (Linux; a no-op elsewhere).

The worker calls `drop_privileges` before it imports anything heavy and makes
itself undumpable; each per-exercise child calls `die_with_parent` and
`install_filter` just before the student's module is imported, and may
`pause` for its hidden phase after its public cases (see Paused: the Zygote's
checks, from outside, that it can no longer print).

The syscall filter (seccomp, built with libseccomp through its ctypes binding
pyseccomp) is a small blocklist: it refuses new processes (threads stay
allowed: torch uses them), `exec`, signals to any process but oneself (by its pid), sockets,
ptrace and memory peeking, namespace and mount changes, and the kinds of memory
the address-space limit does not count (memfd, System V shared memory), so that
they cannot be used to exhaust the machine. System V message queues and
semaphores and POSIX message queues are refused too: they outlive a process,
and in batch grading the next submission of a job slot shares the sandbox's IPC
namespace. Nothing a child does may reach its fork server either: limits
(`prlimit64` on another process, any `setrlimit`), scheduling and I/O priority of
others, and signals by proxy (`F_SETOWN`, `F_SETSIG`, `FIOSETOWN`) are refused.
Argument checks compare whole 64-bit registers, so high garbage bits make a call
fail, never pass.
"""

import ctypes
import errno
import fcntl
import os
import signal
import struct
import sys
import termios
import time

from grader.sandbox.inside import channel

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4

CLONE_THREAD = 0x00010000
LOW_WORD = 0xFFFFFFFF  # int arguments: the kernel reads their low 32 bits only
F_SETOWN, F_SETSIG, F_SETOWN_EX = 8, 10, 15
FIOSETOWN, SIOCSPGRP = 0x8901, 0x8902
PRIO_PROCESS, IOPRIO_WHO_PROCESS = 0, 1

# Refused outright (EPERM): new processes and programs, reaching into or signalling other
# processes, sockets, namespaces and mounts, memory the address-space limit does not count,
# IPC that outlives a process (in a batch the next submission shares the IPC namespace),
# kernel interfaces a submission never needs, and changing any limit.
DENY = ("fork", "vfork", "execve", "execveat", "tkill", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
        "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp",
        "socket", "socketpair", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
        "open_tree", "move_mount", "fsopen", "fsmount", "fspick", "mount_setattr",
        "memfd_create", "memfd_secret", "shmget", "shmat", "msgget", "semget", "mq_open",
        "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "bpf", "perf_event_open",
        "keyctl", "add_key", "request_key", "setrlimit", "migrate_pages", "move_pages")
# Allowed only when their first argument is this process: by its pid for signals, by 0 for the
# rest (libseccomp takes one comparison per argument and rule, so "0 or its pid" cannot be said).
SIGNAL_SELF = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
ZERO_SELF = ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr")

_SECCOMP = None  # the pyseccomp module, or why it is unavailable (a str)
_BASE = None     # the filter without its pid rules, built once by prepare_filter


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def prepare_filter() -> None:
    """In the worker, before it forks: import pyseccomp and build the part of the filter that names no pid.

    Each exercise child then adds only the rules that name its own pid to its (forked) copy.
    """
    global _BASE
    _BASE = build_filter(None)


def _pyseccomp():
    """pyseccomp (libseccomp through ctypes), imported once, before any fork: it runs ldconfig to find the library."""
    global _SECCOMP
    if _SECCOMP is None:
        try:
            import pyseccomp

            _SECCOMP = pyseccomp
        except ImportError:
            _SECCOMP = "the Python package pyseccomp is not installed"
        except (RuntimeError, OSError) as err:  # it raises RuntimeError when libseccomp itself is missing
            _SECCOMP = f"libseccomp is not available ({err})"
    return _SECCOMP


def drop_privileges(uid: int) -> None:
    """Become `uid` (no groups); called first thing when the grader runs as root."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("grader.sandbox.inside: could not drop privileges")


def set_dumpable(flag: bool) -> bool:
    """Undumpable processes cannot be read or written through /proc by their children."""
    if sys.platform != "linux":
        return False
    return _libc().prctl(PR_SET_DUMPABLE, int(flag), 0, 0, 0) == 0


def set_child_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (the fork server), which can then reap them."""
    if sys.platform != "linux":
        return False
    return _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent (the worker, pid `parent`) dies, so no child outlives it."""
    if sys.platform == "linux":
        _libc().prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        if os.getppid() != parent:  # it died before the line above
            os._exit(70)


def _pid_rules(sc, pid: int):
    """The rules that name this process: signals only to itself."""
    return [(sc.ERRNO(errno.EPERM), name, (sc.Arg(0, sc.NE, pid),)) for name in SIGNAL_SELF]


def _rules(sc):
    """(action, syscall, comparisons) of the filter, but for the rules that name a pid."""
    eperm = sc.ERRNO(errno.EPERM)
    rules = [(eperm, name, ()) for name in DENY]
    # clone3 cannot be inspected (its flags sit in memory): ENOSYS makes libc fall back to clone.
    rules.append((sc.ERRNO(errno.ENOSYS), "clone3", ()))
    rules.append((eperm, "clone", (sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0),)))  # a process, not a thread
    for name in ZERO_SELF:
        rules.append((eperm, name, (sc.Arg(0, sc.NE, 0),)))
    rules.append((eperm, "prlimit64", (sc.Arg(2, sc.NE, 0),)))  # setting a limit, even its own
    for op in (F_SETOWN, F_SETSIG, F_SETOWN_EX):  # a signal sent by the kernel on its behalf
        rules.append((eperm, "fcntl", (sc.Arg(1, sc.MASKED_EQ, LOW_WORD, op),)))
    for op in (FIOSETOWN, SIOCSPGRP):
        rules.append((eperm, "ioctl", (sc.Arg(1, sc.MASKED_EQ, LOW_WORD, op),)))
    # Priorities: its own process only (PRIO_USER or a process group would renice the fork server).
    for name, which in (("setpriority", PRIO_PROCESS), ("ioprio_set", IOPRIO_WHO_PROCESS)):
        rules.append((eperm, name, (sc.Arg(0, sc.NE, which),)))
        rules.append((eperm, name, (sc.Arg(1, sc.NE, 0),)))
    return rules


def _add(syscall_filter, sc, rules) -> None:
    for action, name, args in rules:
        if sc.resolve_syscall(sc.Arch.NATIVE, name) < 0:
            continue  # not a system call of this architecture (fork on aarch64)
        syscall_filter.add_rule(action, name, *args)


def build_filter(pid: int | None):
    """The libseccomp filter (pyseccomp.SyscallFilter) for process `pid` (None: without the pid rules);
    None when unavailable here."""
    sc = _pyseccomp()
    if sys.platform != "linux" or isinstance(sc, str):
        return None
    syscall_filter = sc.SyscallFilter(defaction=sc.ALLOW)
    syscall_filter.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # another ABI (x32, i386) is never allowed
    _add(syscall_filter, sc, _rules(sc))
    if pid is not None:
        _add(syscall_filter, sc, _pid_rules(sc, pid))
    return syscall_filter


def install_filter() -> bool:
    """Install the syscall filter on this (single-threaded) process; False when unsupported here."""
    sc = _pyseccomp()
    if _BASE is None or isinstance(sc, str):
        syscall_filter = build_filter(os.getpid())
    else:
        syscall_filter = _BASE  # this process's copy of the worker's: only the pid rules are left to add
        _add(syscall_filter, sc, _pid_rules(sc, os.getpid()))
    if syscall_filter is None:
        return False
    try:
        syscall_filter.load()  # sets no_new_privs first (libseccomp's default)
    except OSError:
        return False
    return True


# --- an exercise child kept for its hidden phase ------------------------------------------------

SETTLE = 1.0      # seconds for a child to reach the state the Zygote waits for
SEAL = b"s"


def proc_status(pid: int) -> dict[str, str]:
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
        info = proc_status(pid)
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
    caps = proc_status(os.getpid()).get("CapEff", "0")
    return bool(int(caps, 16) >> 19 & 1)  # CAP_SYS_PTRACE


def _switches(info: dict[str, str]) -> tuple[str | None, str | None]:
    return info.get("voluntary_ctxt_switches"), info.get("nonvoluntary_ctxt_switches")


class Paused:
    """A child waiting, stopped, for its exercise's hidden inputs; held by the Zygote, which decides from
    outside, through /proc, whether it may have them (the child's side, harness.pause, runs where student code
    ran: nothing it does is trusted). The steps and why each is needed:

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
       pipes), that it still has one task, and notes its context-switch counts.
       What it ran between the seal and the stop can reach nothing that prints:
       the only other processes then are the Zygote and sealed children, all
       undumpable (a terminal: none under bubblewrap's new session);
    4. at its hidden phase the Zygote checks it is still stopped, still one task,
       and has not been switched in since (the counts): it ran no code at all,
       so step 2's verdict still holds. Only then SIGCONT and the hidden inputs.
    5. a group's child (grader.sandbox.sharing) then gets its other members'
       hidden inputs in turn, each after it answered the one before: it has been
       quiet since step 2, as a fresh child with its output discarded would be.

    Children can signal only themselves (the syscall filter), so none can wake
    or kill a stopped one; if it is gone or any check fails, the Zygote kills it
    and grades that exercise's hidden cases in a fresh quiet child instead.
    """

    def __init__(self, pid: int, chan: int, hidden: int, members: list[str] | None = None):
        self.pid, self.chan, self.hidden = pid, chan, hidden  # the Zygote's ends: its channel, its input pipe
        self.members = members or []  # the exercises it runs (a group's, grader.sandbox.sharing)
        self.switches: tuple[str, str] | None = None
        self.running = False  # resumed: running its hidden cases (quiet since its seal)

    def fds(self) -> tuple[int | None, int | None]:
        return self.chan, self.hidden

    def seal(self, reader: channel.FrameReader, deadline: float) -> bool:
        """Steps 2 and 3 (see the class docstring), right after its `ready_hidden`; False: do not keep it."""
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
        if not wait_state(self.pid, "Tt") or not undumpable(self.pid):
            return False
        # Its state reads T a moment before its last switch is counted: note the counts once they hold still.
        self.switches, end = None, time.monotonic() + SETTLE
        while (switches := _switches(proc_status(self.pid))) != self.switches and time.monotonic() < end:
            self.switches = switches
            time.sleep(0.0005)
        return self.switches == switches and self.still_sealed()

    def still_sealed(self) -> bool:
        """Step 4: stopped all along, never switched in since it was sealed."""
        info = proc_status(self.pid)
        return (self.switches is not None and info.get("State", "?")[:1] in "Tt"
                and info.get("Threads", "").strip() == "1" and undumpable(self.pid)
                and _switches(info) == self.switches
                and not pending(self.chan) and not pending(self.hidden))

    def resume(self, frames: list[tuple[dict, bytes]], deadline: float) -> bool:
        """SIGCONT, then its hidden inputs down its pipe (never blocking past `deadline`)."""
        os.kill(self.pid, signal.SIGCONT)
        self.running = True
        return self.send(frames, deadline)

    def send(self, frames: list[tuple[dict, bytes]], deadline: float) -> bool:
        """Frames down its input pipe (never blocking past `deadline`): inputs, and the `end` naming the exercise."""
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

    def close_input(self) -> None:
        """Nothing more to send: it ends after the exercise it has."""
        if self.hidden is not None:
            os.close(self.hidden)
            self.hidden = None

    def close(self) -> None:
        for fd in (self.chan, self.hidden):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.chan = self.hidden = None

    def kill(self) -> None:
        """Gone for good: SIGKILL (works on a stopped process too), reap, close its pipes. Once only."""
        if self.chan is None and self.hidden is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.close()
