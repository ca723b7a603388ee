"""A worker as seen from the grading process: its pipes, its process, how it ended.

`WorkerChannel` reads a worker's frames (capped) and sends it the go signal with the case tensors
that never touch the disk; `WorkerProcess` is one worker process of its own (a fork server's
session, grader.sandbox.slot.Session, is the other kind of handle).
"""

import ctypes
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from grader.safe_text import clean_tree, json_holds_surrogates
from grader.sandbox.capture import CappedStream
from grader.sandbox.inside.channel import FrameReader, ProtocolError, frame_bytes, pipe
from grader.sandbox.levels import Mounts, stage_package, start_worker

STARTUP_TIMEOUT = 120.0  # importing torch on a loaded machine
GRACE = 5.0              # between two exercises, or after the last one
PIPE_CHUNK = 1 << 16     # one write to the go pipe, so a slow reader never blocks the grader


class CleanFrames(FrameReader):
    """Frames whose strings are valid Unicode (a worker's JSON may spell lone surrogates, "\\ud800").

    Cleaning walks every string of a header; the header's text shows when there is nothing to clean.
    """

    def parse(self, body: bytes) -> dict:
        try:
            text = body.decode("utf-8")
            meta = json.loads(text)
        except ValueError:  # not what a worker writes (ASCII JSON): parsed as json reads bytes, then cleaned
            return clean_tree(super().parse(body))
        if not isinstance(meta, dict):
            raise ProtocolError("an answer frame's header is not an object")
        return clean_tree(meta) if json_holds_surrogates(text) else meta


class WorkerChannel:
    """The grading side of one worker's pipes: frames in, the go signal (and hidden inputs) out, output captured."""

    def __init__(self, channel_r: int, go_w: int | None, stdout, stderr, output_bytes: int, max_total: int):
        self._go_w = go_w
        self.stdout = CappedStream(stdout, output_bytes)
        self.stderr = CappedStream(stderr, output_bytes)
        self.frames: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(channel_r, max_total), daemon=True)
        self._reader.start()

    def _read(self, fd: int, max_total: int) -> None:
        reader = CleanFrames(fd, max_total=max_total)
        try:
            while (frame := reader.read()) is not None:
                self.frames.put(frame)  # strings valid Unicode from here on
            self.frames.put(("eof", None))
        except (ProtocolError, OSError, RecursionError) as err:
            self.frames.put(("protocol", str(err)))
        finally:
            os.close(fd)

    def go(self, inputs: list[tuple[str, bytes]] = ()) -> None:
        """Release the worker, with case tensors that never touch the disk: once to start (the public cases'
        private part), once more with the hidden cases' inputs."""
        if self._go_w is None:
            return
        out = bytearray(b"g")
        for file, blob in inputs:
            out += frame_bytes({"type": "inputs", "file": file}, blob)
        data = bytes(out + frame_bytes({"type": "end"}))
        _write_before(self._go_w, data, time.monotonic() + GRACE + len(data) / 20e6)  # 20 MB/s at worst

    def next_frame(self, deadline: float):
        """(meta, blob), ("eof", None), ("protocol", msg) or ("timeout", None)."""
        try:
            return self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return ("timeout", None)

    def _close(self) -> None:
        if self._go_w is not None:
            os.close(self._go_w)
            self._go_w = None
        self.stdout.join()
        self.stderr.join()


def _write_before(fd: int, data: bytes, deadline: float) -> None:
    """Write all of `data` unless the worker stops reading (or died): then give up quietly, it will be noticed."""
    view = memoryview(data)
    try:
        while view:
            if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
                return
            view = view[os.write(fd, view[:PIPE_CHUNK]):]
    except OSError:
        pass


def describe_exit(code: int | None, memory_mb: int) -> str:
    """How a worker ended, from its exit code (negative: a signal), for the report."""
    if code is None:
        return "stopped answering"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = (f" (often: out of memory, limit {memory_mb} MB, or CPU time)"
                if name in ("SIGKILL", "SIGXCPU", "SIGSEGV", "SIGABRT") else "")
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a started worker's whole process group (under bwrap, the sandbox dies with it)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass  # a process that will not die must still not stop the grader


def workspace(workdir: Path, submission: Path) -> Mounts:
    """One worker's folders in `workdir` (made here; the submission is staged once the worker runs), with the
    grader package staged."""
    for folder in (workdir / "inputs", workdir / "cwd", submission):
        folder.mkdir(parents=True, exist_ok=True)
    return Mounts(inputs=workdir / "inputs", submission=submission, cwd=workdir / "cwd",
                  lib=stage_package(workdir / "lib"))


class WorkerProcess(WorkerChannel):
    """One worker process of its own: started early, released with `go()`, read frame by frame with deadlines."""

    def __init__(self, level: str, limits, mounts: Mounts, plan_path: Path, max_total: int = 1 << 30):
        """`limits`: grader.config.Limits (or what grader.sandbox.prestart read: the same fields)."""
        channel_r, channel_w = pipe()
        go_r, go_w = pipe()
        args = [str(plan_path), "--channel", str(channel_w), "--go", str(go_r)]
        try:
            self.proc = start_worker(level, limits, mounts, args, (channel_w, go_r))
        except BaseException:
            os.close(channel_r)
            os.close(go_w)
            raise
        finally:
            os.close(channel_w)
            os.close(go_r)
        os.set_blocking(go_w, False)
        self.memory_mb = limits.memory_mb
        super().__init__(channel_r, go_w, self.proc.stdout, self.proc.stderr, limits.output_bytes, max_total)

    def kill(self) -> None:
        """Kill the whole process group (under bwrap, the sandbox dies with it)."""
        kill_group(self.proc)
        self._close()

    def exit_description(self) -> str:
        try:
            return describe_exit(self.proc.wait(timeout=2), self.memory_mb)
        except subprocess.TimeoutExpired:
            return describe_exit(None, self.memory_mb)


def filter_status() -> str:
    """What the exercise children's syscall filter is here, for the report: 'seccomp' or why there is none.

    For the grading process, which shares the workers' Python and libraries: it checks that both
    pieces are there without importing pyseccomp (whose import runs ldconfig).
    """
    import importlib.util

    if sys.platform != "linux":
        return "none: seccomp is a Linux feature, the exercises run without a syscall filter"
    missing = None
    if importlib.util.find_spec("pyseccomp") is None:
        missing = "the Python package pyseccomp is not installed"
    else:
        try:
            ctypes.CDLL("libseccomp.so.2")
        except OSError:
            missing = "libseccomp is not installed (Debian package libseccomp2)"
    if missing:
        return f"none: {missing}, so the exercises run without a syscall filter"
    return "seccomp (libseccomp): no processes, exec, sockets, signals or limits for other processes"
