"""Draining a worker's stdout/stderr without ever blocking it or keeping it all."""

import os
import threading

from grader.safe_text import from_bytes


class CappedStream:
    """Reads a pipe to its end in a thread, keeping the first and last bytes only.

    Draining everything means a student who prints a lot never blocks on a
    full pipe; keeping only head and tail means the report stays small.
    """

    def __init__(self, pipe, limit: int):
        self.pipe = pipe
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while chunk := os.read(self.pipe.fileno(), 65536):
                self.total += len(chunk)
                room = self.half - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self.tail += chunk
                    del self.tail[: max(0, len(self.tail) - self.half)]
        except OSError:
            pass
        finally:
            self.pipe.close()

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    @property
    def dropped(self) -> int:
        return max(0, self.total - len(self.head) - len(self.tail))

    def text(self) -> str:
        """What was kept, as valid text (invalid UTF-8 replaced); escaping is the views' job."""
        head = from_bytes(self.head)
        if not self.dropped:
            return head + from_bytes(self.tail)
        return head + f"\n... [{self.dropped} bytes dropped] ...\n" + from_bytes(self.tail)
