"""Frames on the worker's answer channel: a pipe, never stdout.

A frame is a 12-byte header (magic, JSON length, blob length), a JSON object,
then an optional blob of safetensors bytes. The reader checks both lengths
against its caps before reading anything, so a worker cannot make the
grading process allocate more than the caps allow. Imports only the standard
library: the worker uses this module too.
"""

import json
import os
import struct

MAGIC = b"BPN1"
HEADER = struct.Struct(">4sII")


class ProtocolError(Exception):
    """The worker sent something that is not a well-formed, bounded frame."""


def send(fd: int, meta: dict, blob: bytes = b"") -> None:
    body = json.dumps(meta).encode()
    data = HEADER.pack(MAGIC, len(body), len(blob)) + body + blob
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FrameReader:
    def __init__(self, fd: int, max_meta: int = 1 << 20, max_blob: int = 256 << 20):
        self.fd = fd
        self.max_meta = max_meta
        self.max_blob = max_blob

    def _read_exact(self, size: int) -> bytes | None:
        chunks, missing = [], size
        while missing:
            chunk = os.read(self.fd, min(missing, 1 << 20))
            if not chunk:
                if missing == size:
                    return None
                raise ProtocolError("the answer channel closed in the middle of a frame")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def read(self) -> tuple[dict, bytes] | None:
        """The next frame, or None at a clean end of the channel."""
        header = self._read_exact(HEADER.size)
        if header is None:
            return None
        magic, meta_len, blob_len = HEADER.unpack(header)
        if magic != MAGIC:
            raise ProtocolError("the answer channel carried bytes that are not a frame")
        if meta_len > self.max_meta or blob_len > self.max_blob:
            raise ProtocolError(f"an answer frame was too large ({meta_len + blob_len} bytes)")
        body = self._read_exact(meta_len) or b""
        blob = self._read_exact(blob_len) or b"" if blob_len else b""
        try:
            meta = json.loads(body)
        except ValueError:
            raise ProtocolError("an answer frame's header is not valid JSON") from None
        if not isinstance(meta, dict):
            raise ProtocolError("an answer frame's header is not an object")
        return meta, blob
