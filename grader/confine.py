"""OS-level confinement applied by the worker to itself (Linux; a no-op elsewhere).

Standard library only: the worker calls `drop_privileges` before it imports
anything heavy and makes itself undumpable; each per-exercise child calls
`die_with_parent` and `install_filter` just before the student's module is
imported.

The syscall filter (seccomp) is a small blocklist, written out as classic BPF:
it refuses new processes (threads stay allowed: torch uses them), `exec`,
signals to any process but oneself, sockets, ptrace and memory peeking,
namespace and mount changes, and the kinds of memory the address-space limit
does not count (memfd, System V shared memory), so that they cannot be used to
exhaust the machine. System V message queues and semaphores and POSIX message
queues are refused too: they outlive a process, and in batch grading the next
submission of a job slot shares the sandbox's IPC namespace.
"""

import ctypes
import errno
import os
import platform
import struct
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000

# BPF opcodes: load word at absolute offset, jump if equal / greater or equal / bits set, return.
LD_ABS = 0x20
JEQ = 0x15
JGE = 0x35
JSET = 0x45
RET = 0x06

NR_OFFSET, ARCH_OFFSET, ARG0_OFFSET = 0, 4, 16  # struct seccomp_data (low word of args[0])
CLONE_THREAD = 0x00010000

# Per architecture: audit arch, then syscall numbers. `deny` fails with EPERM;
# `self_only` is allowed only when its first argument is this process.
ARCHES = {
    "x86_64": {
        "audit": 0xC000003E,
        "clone": 56, "clone3": 435,
        "self_only": {"kill": 62, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297},
        "deny": {"fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "tkill": 200,
                 "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
                 "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
                 "socket": 41, "socketpair": 53, "unshare": 272, "setns": 308, "mount": 165,
                 "umount2": 166, "pivot_root": 155, "chroot": 161, "memfd_create": 319,
                 "shmget": 29, "shmat": 30, "msgget": 68, "semget": 64, "mq_open": 240,
                 "io_uring_setup": 425, "io_uring_enter": 426,
                 "io_uring_register": 427, "userfaultfd": 323, "bpf": 321, "perf_event_open": 298,
                 "keyctl": 250, "add_key": 248, "request_key": 249},
        "x32_bit": 0x40000000,
    },
    "aarch64": {
        "audit": 0xC00000B7,
        "clone": 220, "clone3": 435,
        "self_only": {"kill": 129, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240},
        "deny": {"execve": 221, "execveat": 281, "tkill": 130,
                 "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
                 "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
                 "socket": 198, "socketpair": 199, "unshare": 97, "setns": 268, "mount": 40,
                 "umount2": 39, "pivot_root": 41, "chroot": 51, "memfd_create": 279,
                 "shmget": 194, "shmat": 196, "msgget": 186, "semget": 190, "mq_open": 180,
                 "io_uring_setup": 425, "io_uring_enter": 426,
                 "io_uring_register": 427, "userfaultfd": 282, "bpf": 280, "perf_event_open": 241,
                 "keyctl": 219, "add_key": 217, "request_key": 218},
        "x32_bit": None,
    },
}


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def drop_privileges(uid: int) -> None:
    """Become `uid` (no groups); called first thing when the grader runs as root."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("grader.worker: could not drop privileges")


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


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _first_arg_in(values: list[int]) -> list[bytes]:
    """Allow when args[0] (low word) is one of `values`, else EPERM."""
    body = [_op(LD_ABS, ARG0_OFFSET)]
    for i, value in enumerate(values):
        body.append(_op(JEQ, value, jt=len(values) - i, jf=0))
    return body + [_op(RET, RET_ERRNO | errno.EPERM), _op(RET, RET_ALLOW)]


def build_filter(arch: str, pid: int) -> bytes:
    """The BPF program for `arch`, allowing signals to `pid` (this process) only."""
    table = ARCHES[arch]
    prog = [_op(LD_ABS, ARCH_OFFSET), _op(JEQ, table["audit"], jt=1), _op(RET, RET_KILL_PROCESS)]

    def block(nr: int, body: list[bytes]) -> None:
        prog.extend([_op(LD_ABS, NR_OFFSET), _op(JEQ, nr, jt=0, jf=len(body)), *body])

    if table["x32_bit"]:  # the x32 ABI numbers every syscall again with this bit set
        prog.extend([_op(LD_ABS, NR_OFFSET), _op(JGE, table["x32_bit"], jt=0, jf=1),
                     _op(RET, RET_ERRNO | errno.EPERM)])
    for nr in table["deny"].values():
        block(nr, [_op(RET, RET_ERRNO | errno.EPERM)])
    # clone3 cannot be inspected (its flags sit in memory): ENOSYS makes libc fall back to clone.
    block(table["clone3"], [_op(RET, RET_ERRNO | errno.ENOSYS)])
    block(table["clone"], [_op(LD_ABS, ARG0_OFFSET), _op(JSET, CLONE_THREAD, jt=0, jf=1),
                           _op(RET, RET_ALLOW), _op(RET, RET_ERRNO | errno.EPERM)])
    for name, nr in table["self_only"].items():
        allowed = [pid, -pid] if name == "kill" else [pid]  # kill(-pid): its own process group
        block(nr, _first_arg_in(allowed))
    prog.append(_op(RET, RET_ALLOW))
    return b"".join(prog)


def install_filter() -> bool:
    """Install the syscall filter on this (single-threaded) process; False when unsupported."""
    arch = platform.machine()
    if sys.platform != "linux" or arch not in ARCHES:
        return False
    program = build_filter(arch, os.getpid())
    buf = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    libc = _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0
