"""Frames on the worker's answer channel: a pipe, never stdout.

A frame is a 12-byte header (magic, JSON length, blob length), a JSON object,
then an optional blob of safetensors bytes. The reader checks both lengths
against its caps before reading anything, and the total against a budget, so
a worker cannot make the reading process allocate more than the caps allow;
with a deadline it never blocks past it, even on half a frame. Imports only
the standard library: the worker uses this module too.
"""

import fcntl
import json
import os
import select
import struct
import time

MAGIC = b"BPN1"
HEADER = struct.Struct(">4sII")
_dumps, _writev = json.dumps, os.writev  # bound at import: student code may rebind the module attributes
PIPE_BYTES = 1 << 20  # a whole case's answers in one pipe buffer (Linux's default cap for a user)


class ProtocolError(Exception):
    """The worker sent something that is not a well-formed, bounded frame."""


class Timeout(Exception):
    """The deadline passed before a whole frame arrived."""


def pipe() -> tuple[int, int]:
    """(read, write) of a pipe that holds PIPE_BYTES where the system allows (the default holds 64 KiB): a case's
    answers then cross in one write and one wake-up of the reader, not a dozen of each."""
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, AttributeError):  # past this user's pipe quota, or not Linux: the default size
        pass
    return read_fd, write_fd


def _head(meta: dict, blob_len: int) -> bytes:
    """A frame up to its blob: the header, then the JSON."""
    body = _dumps(meta).encode()
    return HEADER.pack(MAGIC, len(body), blob_len) + body


def frame_bytes(meta: dict, blob: bytes = b"") -> bytes:
    return _head(meta, len(blob)) + blob


def send(fd: int, meta: dict, blob: bytes = b"") -> None:
    """One whole frame. The blob is written from where it lies, never copied into the frame (answers relayed by
    the session take a megabyte a submission)."""
    parts = [memoryview(_head(meta, len(blob))), memoryview(blob)]
    while parts:
        written = _writev(fd, parts)
        while parts and written >= len(parts[0]):
            written -= len(parts.pop(0))
        if parts:
            parts[0] = parts[0][written:]


class FrameReader:
    def __init__(self, fd: int, max_meta: int = 1 << 20, max_blob: int = 256 << 20, max_total: int | None = None):
        self.fd = fd
        self.max_meta = max_meta
        self.max_blob = max_blob
        self.max_total = max_total
        self.total = 0

    def _wait(self, deadline: float | None) -> None:
        if deadline is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
            raise Timeout()

    def _read_exact(self, size: int, deadline: float | None) -> bytes | None:
        chunks, missing = [], size
        while missing:
            self._wait(deadline)
            chunk = os.read(self.fd, min(missing, 1 << 20))
            if not chunk:
                if missing == size:
                    return None
                raise ProtocolError("the answer channel closed in the middle of a frame")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def read(self, deadline: float | None = None) -> tuple[dict, bytes] | None:
        """The next frame, or None at a clean end of the channel; Timeout past `deadline` (monotonic)."""
        header = self._read_exact(HEADER.size, deadline)
        if header is None:
            return None
        magic, meta_len, blob_len = HEADER.unpack(header)
        if magic != MAGIC:
            raise ProtocolError("the answer channel carried bytes that are not a frame")
        if meta_len > self.max_meta or blob_len > self.max_blob:
            raise ProtocolError(f"an answer frame was too large ({meta_len + blob_len} bytes)")
        self.total += HEADER.size + meta_len + blob_len
        if self.max_total is not None and self.total > self.max_total:
            raise ProtocolError(f"the answers were far larger than expected ({self.total} bytes)")
        body = self._read_exact(meta_len, deadline) or b""
        if len(body) != meta_len:
            raise ProtocolError("the answer channel closed in the middle of a frame")
        blob = (self._read_exact(blob_len, deadline) or b"") if blob_len else b""
        if len(blob) != blob_len:
            raise ProtocolError("the answer channel closed in the middle of a frame")
        return self.parse(body), blob

    def parse(self, body: bytes) -> dict:
        """A frame's JSON header as a dict; ProtocolError if it is not one."""
        try:
            meta = json.loads(body)
        except ValueError:
            raise ProtocolError("an answer frame's header is not valid JSON") from None
        if not isinstance(meta, dict):
            raise ProtocolError("an answer frame's header is not an object")
        return meta


def read_inputs(reader, deadline: float | None = None, end: dict | None = None) -> list[tuple[str, bytes]] | None:
    """The (file, safetensors bytes) of the `inputs` frames up to an `end` frame (copied into `end`); None if the
    channel ends first (then nothing of it may be used). Frames of other types are skipped."""
    received = []
    while (frame := reader.read(deadline)) is not None:
        meta, blob = frame
        if meta.get("type") == "end":
            if end is not None:
                end.update(meta)
            return received
        if meta.get("type") == "inputs" and isinstance(meta.get("file"), str):
            received.append((meta["file"], blob))
    return None
