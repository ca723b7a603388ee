"""A fork server for batch grading: one pre-warmed, sandboxed worker per job slot.

Importing torch costs over a second per process; grading a submission takes
a tenth of that. So batch grading starts, per job slot, one worker process
inside the usual isolation (`python -m grader.sandbox.inside --serve`), which
imports torch once and then, per submission, forks a *session*: a child that
runs exactly what a fresh worker would (grader.sandbox.inside.session.run_session: hello,
go, the Zygote with its children per exercise or group).

The slot's folders are the only part of the host the sandbox sees, and they
hold one submission at a time: the grading process stages a submission
into `submission/` (and its plan into `inputs/`) only when the previous
session has ended, and empties them afterwards. Hidden inputs are never on
disk (they come down the session's go pipe after its public phase). When a
session ends, the server kills its process group, reaps every descendant
(it is a child subreaper), and empties the writable places (the working
directory and, under bubblewrap, /tmp) before it reports the end, so
nothing one submission leaves behind reaches the next. It also checks its own
limits and scheduling against what they were before the first session: a
change means a submission reached it (the syscall filter should make that
impossible), and the end message says so, so the grading process replaces the
server and grades that submission again.

Control messages are small JSON datagrams on a Unix socket pair; a new
session's pipes (answer channel, go, stdout, stderr) travel with its request
as SCM_RIGHTS, so every session has pipes of its own. The server side
(`serve`) imports only the standard library, torch and the worker's grader
modules; the grading process's handle on a server is grader.sandbox.slot.
"""

import json
import os
import resource
import select
import signal
import socket
import time

from grader.sandbox.inside import confine

MAX_MESSAGE = 4096
REAP_WAIT = 5.0  # seconds for a session's processes to disappear once it is killed
IOPRIO_GET = {"x86_64": 252, "aarch64": 31}.get(os.uname().machine, -1)  # ioprio_get(2) has no libc wrapper


def socketpair() -> tuple[socket.socket, socket.socket]:
    kind = getattr(socket, "SOCK_SEQPACKET", None) if hasattr(socket, "AF_UNIX") else None
    try:
        return socket.socketpair(socket.AF_UNIX, kind or socket.SOCK_STREAM)
    except OSError:  # no SEQPACKET here: small messages on a stream keep their boundaries in practice
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def send(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def receive(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """(message, fds); (None, []) when the other side is gone."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 8)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    try:
        message = json.loads(data)
    except ValueError:
        message = {}
    return (message if isinstance(message, dict) else {}), fds


def serve(control_fd: int, wipe_tmp: bool, warm_up: str | None = None) -> None:
    """The server's life: import torch once, then fork a session per request. Never returns."""
    import gc

    import torch  # noqa: F401 - the point of the server: every session inherits it

    from grader.course import mlp  # noqa: F401 - likewise
    from grader.sandbox.inside import guard, harness, session  # noqa: F401 - likewise

    confine.set_dumpable(False)  # no session child can read or write this process through /proc
    confine.set_child_subreaper()  # a session's orphans come back here, so the server can see them end
    confine.die_with_parent(os.getppid())
    sock = socket.socket(fileno=control_fd)
    if warm_up is not None and not _warm_up_written(sock):
        os._exit(0)  # the grading process is gone
    cold = _warm_up(warm_up)
    # Autograd locked here, once: every session is a fork of this process and starts locked (the lock
    # costs a quarter of a session otherwise); the server itself runs no submission code.
    kernels = guard.install()  # noqa: F841 - kept alive by this frame, which never returns
    gc.freeze()  # forked children then do not copy the heap just to scan it
    collapse_huge_pages()
    writable = [os.getcwd()] + (["/tmp"] if wipe_tmp else [])
    skeleton = _skeleton(writable)  # under bwrap, /tmp holds the folders its mounts need: those stay
    baseline = health()
    send(sock, {"type": "ready", "pid": os.getpid(), "cold": cold[:50]})
    while True:
        try:
            message, fds = receive(sock)
        except OSError:
            message, fds = None, []
        if message is None:
            os._exit(0)  # the grading process is gone
        if message.get("type") != "session" or len(fds) != 4:
            for fd in fds:
                os.close(fd)
            continue
        sid = message.get("id")
        _preload_public(message.get("plan"))
        pid = os.fork()
        if pid == 0:
            _session_child(sock, message.get("plan"), fds)
        for fd in fds:
            os.close(fd)
        send(sock, {"type": "started", "id": sid, "pid": pid})
        status = _await_end(sock, pid, sid)
        clean = _reap_all() and _empty(writable, skeleton)
        now = health()
        tampered = sorted(key for key in baseline if now.get(key) != baseline[key])
        send(sock, {"type": "ended", "id": sid, "status": status, "clean": clean, "tampered": tampered})


def collapse_huge_pages() -> int:
    """Map this process's anonymous memory with 2 MiB pages (MADV_COLLAPSE, Linux 6.1+); bytes collapsed.

    A fork copies one page-table entry per resident 4 KiB page and the child's exit drops them: with torch
    imported (~150 MB of heap) that is a third of an exercise child's cost, paid ten times per session.
    Collapsed, the same memory takes 512 times fewer entries, and a child's write still copies only the
    4 KiB it touches. Once per server (~0.3 s); where the kernel cannot, nothing changes but the speed.
    """
    import ctypes

    madv_collapse, huge = 25, 2 << 20
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as fh:
            maps = [line.split() for line in fh]
    except (OSError, AttributeError):
        return 0
    done = 0
    for fields in maps:
        if fields[1] != "rw-p" or (len(fields) > 5 and fields[5] != "[heap]"):
            continue  # private anonymous memory and the heap; fork does not copy untouched file pages
        low, high = (int(x, 16) for x in fields[0].split("-"))
        start, end = (low + huge - 1) & ~(huge - 1), high & ~(huge - 1)
        if end > start and madvise(start, end - start, madv_collapse) == 0:
            done += end - start
    return done


def _warm_up_written(sock: socket.socket) -> bool:
    """Wait for the grading process to say the warm-up plan is written (False: it is gone).

    The server starts before the plan exists: writing it takes the grading process's own torch import,
    which then overlaps with the server's instead of delaying it.
    """
    while True:
        try:
            message, fds = receive(sock)
        except OSError:
            return False
        for fd in fds:
            os.close(fd)
        if message is None:
            return False
        if message.get("type") == "warm_up":
            return True


def health() -> dict[str, object]:
    """What another process of the same user could change about this one: limits, priorities, CPUs."""
    import ctypes

    state: dict[str, object] = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            try:
                state[name] = resource.getrlimit(getattr(resource, name))
            except (OSError, ValueError):
                pass
    for name, read in (("nice", lambda: os.getpriority(os.PRIO_PROCESS, 0)),
                       ("scheduler", lambda: os.sched_getscheduler(0)),
                       ("cpus", lambda: sorted(os.sched_getaffinity(0))),
                       ("ioprio", lambda: ctypes.CDLL(None).syscall(IOPRIO_GET, 1, 0))):
        try:
            state[name] = read()
        except (OSError, AttributeError):
            pass
    return state


def _preload_public(plan_path) -> None:
    """Read the public cases' inputs once for every session (the plan is the grading process's file)."""
    from grader.sandbox.inside import harness

    try:
        with open(plan_path) as fh:
            plan = json.load(fh)
        for case in plan["cases"]:
            if not case.get("hidden"):
                harness.preload(case["file"], path=os.path.join(plan["inputs"], case["file"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # the session reads them itself


def _warm_up(path: str | None) -> list[str]:
    """Run every exercise of the course once on stand-in inputs (trusted code, a tiny synthetic case).

    Lazy set-up (torch's operators, the safetensors and JSON paths, the harness's own code) then happens
    once here instead of in every exercise child. The plan comes from the grading side, made from the
    exercises' specs (grader.sandbox.warm): this side knows no exercise. Returns the exercises that
    did not warm up (also said on stderr): a failure is never silent.
    """
    import sys
    import tempfile
    import types

    import torch
    from safetensors.torch import load_file

    from grader.sandbox.inside import channel, harness

    if path is None:
        return []
    try:
        with open(path) as fh:
            plan = json.load(fh)
        harness.PRELOADED["warm-up"] = load_file(os.path.join(os.path.dirname(path), plan["file"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"grader fork server: no warm-up ({type(err).__name__}: {err})", file=sys.stderr, flush=True)
        return ["*"]
    case = {"name": "warm-up", "file": "warm-up", "ints": plan["ints"], "max_numel": 1 << 20}
    cold = []
    for exercise in plan["exercises"]:
        shapes = exercise["answers"]

        def stand_in(*args, _shapes=shapes, _dict=exercise["returns_dict"], **kwargs):
            zeros = {k: torch.zeros(shape) for k, shape in _shapes.items()}
            return zeros if _dict else next(iter(zeros.values()))

        module = types.ModuleType("grader_warm_up")
        setattr(module, exercise["function"], stand_in)
        sys.modules[module.__name__] = module
        problems = []
        with tempfile.TemporaryFile() as out:
            try:
                harness.Harness({**plan, "submission": "/nonexistent"}, out.fileno()).run_exercise(
                    {**exercise, "module": module.__name__}, [case])
                out.seek(0)
                reader = channel.FrameReader(out.fileno())
                while (frame := reader.read()) is not None:
                    meta = frame[0]
                    bad = {k: v for k, v in meta.get("notes", {}).items() if v.get("status") != "ok"}
                    if meta.get("type") == "exercise_error" or "error" in meta or bad \
                            or meta.get("trajectory", {"status": "ok"}).get("status") != "ok":
                        problems.append(str(meta)[:300])
            except Exception as err:  # noqa: BLE001 - said below, and the sessions still run (cold)
                problems.append(f"{type(err).__name__}: {err}")
            finally:
                del sys.modules[module.__name__]
        if problems:
            cold.append(exercise["id"])
            print(f"grader fork server: exercise {exercise['id']} did not warm up: {problems[0]}",
                  file=sys.stderr, flush=True)
    del harness.PRELOADED["warm-up"]
    return cold


def _session_child(sock: socket.socket, plan: str, fds: list[int]) -> None:
    """In the forked session: own process group, own pipes, then a worker's life. Never returns."""
    try:
        server = os.getppid()
        sock.close()  # the control socket stays with the server
        os.setpgid(0, 0)  # the server kills the whole session with one killpg
        confine.die_with_parent(server)
        channel_w, go_r, out_w, err_w = fds
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        from grader.sandbox.inside.session import run_session

        run_session(plan, channel_w, go_r)
    finally:
        os._exit(70)


def _await_end(sock: socket.socket, pid: int, sid) -> int:
    """Wait until the session exits, killing it if the grading process asks; its wait status."""
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pass
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            waiting = [sock] + ([pidfd] if pidfd is not None else [])
            ready = select.select(waiting, [], [], None if pidfd is not None else 0.002)[0]
            if sock in ready:
                try:
                    message, fds = receive(sock)
                except OSError:
                    message, fds = None, []
                for fd in fds:
                    os.close(fd)
                if message is None:  # the grading process is gone: so are we
                    _kill_group(pid)
                    os._exit(0)
                if message.get("type") == "kill" and message.get("id") == sid:
                    _kill_group(pid)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_all() -> bool:
    """Wait for every process below the server to end (exercise children die with their session)."""
    deadline = time.monotonic() + REAP_WAIT
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if not done:
            time.sleep(0.001)
    return False


def _skeleton(folders: list[str]) -> dict[str, int]:
    """The folders (and what is in them) before any session, with their modes."""
    return {path: os.lstat(path).st_mode & 0o7777 for path in [*folders, *_tree(folders)]}


def _tree(folders: list[str]) -> set[str]:
    """Every path below `folders`, not crossing into other mounts (such as the sandbox's own folders)."""
    found = set()
    for folder in folders:
        for top, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(top, d))]
            found.update(os.path.join(top, name) for name in dirs + files)
    return found


def _empty(folders: list[str], keep: dict[str, int]) -> bool:
    """Remove what the session wrote in `folders` (all but `keep`, whose modes come back); False if something stayed."""
    for path, mode in keep.items():  # a folder made unreadable would hide what is inside it
        try:
            os.chmod(path, mode)
        except OSError:
            pass  # not ours (bubblewrap as root made it): then the session could not change it either
    for path in sorted(_tree(folders) - keep.keys(), key=len):
        try:
            _remove(path)
        except (OSError, RecursionError):
            pass  # what stays is found below
    return not (_tree(folders) - keep.keys())


def _remove(path: str) -> None:
    """Remove a file, or a folder and everything in it whatever modes the session gave them."""
    if not os.path.lexists(path):
        return  # inside a folder removed just before
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        for name in os.listdir(path):
            _remove(os.path.join(path, name))
        os.rmdir(path)
    else:
        os.unlink(path)
