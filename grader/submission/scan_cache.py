"""The integrity scan (grader.integrity.scan), remembered by content within one grading process.

A batch sees the same files many times (untouched stubs, shared solutions, a rerun with --regrade):
a scan depends only on the files' names and text and on the allow list, so its findings are kept
under a hash of exactly those and handed out as copies (callers extend the list they get).
"""

import dataclasses
import hashlib
from collections import OrderedDict

from grader import phases
from grader.submission import integrity

MAX_ENTRIES = 4096
MAX_FINDINGS = 20_000  # kept in all (a few hundred bytes each): a course that breaks every rule stays bounded too
_found: OrderedDict[str, list] = OrderedDict()
_kept = [0]  # findings held by _found


def clear() -> None:
    _found.clear()
    _kept[0] = 0


def key(files: dict[str, str], allow) -> str:
    h = hashlib.sha256()
    for name, source in sorted(files.items()):
        for part in (name, source):
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "little") + data)  # length-prefixed: no two inputs share a stream
    for entry in allow:
        data = str(entry).encode("utf-8", "surrogatepass")
        h.update(b"allow" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def scan(files: dict[str, str], allow=()) -> list:
    """integrity.scan(files, allow), computed once per distinct content."""
    with phases.phase("scan"):
        k = key(files, allow)
        found = _found.get(k)
        if found is None:
            found = _found[k] = integrity.scan(files, allow)
            _kept[0] += len(found)
            while _found and (len(_found) > MAX_ENTRIES or _kept[0] > MAX_FINDINGS):
                _kept[0] -= len(_found.popitem(last=False)[1])
        else:
            _found.move_to_end(k)
        return [dataclasses.replace(f) for f in found]
