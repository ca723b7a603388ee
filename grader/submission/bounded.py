"""Reading untrusted input before any sandbox, within bounds known before reading.

The grading process reads every submission itself (to stage it, scan it and
find a notebook's exercises), so each read is bounded by what can be known
first: a file's size from `fstat` on a descriptor opened without following
links, a zip's entry count and directory size from its end record, a
folder's entries as they are listed, a JSON text's nesting and number of
containers by a linear scan of its bytes, and source code by a count of its
lines and tokens before it is parsed (parsing costs about 1 KB of memory per
token). Past a bound: `InputError`, one line that says which bound and what
to do; the callers turn it into their own error (exit 2, a batch row).

Symbolic links are never followed: a link is neither read nor listed into.
"""

import errno
import os
import re
import stat
import struct
from pathlib import Path, PurePosixPath

MAX_WALK_ENTRIES = 10_000      # names listed in a submission folder (any kind, at any depth)
MAX_WALK_DEPTH = 16            # folder levels
MAX_ZIP_BYTES = 64 << 20       # a .zip as uploaded
MAX_ZIP_ENTRIES = 1_000        # entries in its central directory
MAX_ZIP_DIRECTORY = 1 << 20    # bytes of its central directory
MAX_JSON_DEPTH = 100           # a notebook's nesting (nbformat itself needs about 6)
MAX_JSON_CONTAINERS = 500_000  # a notebook's lists and objects (outputs included: read before they are dropped)
MAX_CELLS = 5_000              # a notebook's cells
MAX_SOURCE_LINES = 20_000      # lines (and `;`-separated statements) of code, over a whole submission
MAX_SOURCE_TOKENS = 200_000    # names, numbers and operators, over a whole submission
MAX_STATEMENTS = 3_000         # top-level statements of a notebook: what finding its exercises costs


class InputError(Exception):
    """A submission past one of the bounds, or not readable without following a link (one line)."""


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def open_regular(path: Path, label: str):
    """A binary file object for a regular file, opened without following a link, and its stat."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(f"{label} is a symbolic link: the grader never follows links, "
                             "submit the file itself") from None
        raise InputError(f"cannot read {label}: {err.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise InputError(f"{label} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), info


def read_regular(path: Path, limit: int, label: str) -> bytes:
    """The bytes of a regular file (never a link), refused from its size before anything is read."""
    fh, info = open_regular(path, label)
    with fh:
        if info.st_size > limit:
            raise InputError(f"{label} is larger than {_size(limit)}")
        data = fh.read(limit + 1)  # it may have grown since
    if len(data) > limit:
        raise InputError(f"{label} is larger than {_size(limit)}")
    return data


def walk_folder(root: Path, suffix: str) -> tuple[list[tuple[PurePosixPath, int]], list[PurePosixPath]]:
    """(regular files ending in `suffix` with their sizes, symbolic links ending in it) under `root`.

    Hidden entries and `__pycache__` are skipped; links are listed, never followed; the walk stops
    with InputError past MAX_WALK_ENTRIES names or MAX_WALK_DEPTH levels.
    """
    files, links = [], []
    seen = 0
    stack = [(Path(root), PurePosixPath("."), 0)]
    while stack:
        folder, rel, depth = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = []
                for entry in listing:
                    seen += 1
                    if seen > MAX_WALK_ENTRIES:
                        raise InputError(f"the submission folder holds more than {MAX_WALK_ENTRIES} files and "
                                         "folders: submit only the exercise files")
                    entries.append(entry)
        except OSError as err:
            raise InputError(f"cannot list {rel}: {err.strerror}") from None
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            path = rel / entry.name
            if entry.is_symlink():
                if entry.name.endswith(suffix):
                    links.append(path)
            elif entry.is_dir(follow_symlinks=False):
                if depth + 1 >= MAX_WALK_DEPTH:
                    raise InputError(f"the submission folder nests more than {MAX_WALK_DEPTH} levels deep")
                stack.append((Path(entry.path), path, depth + 1))
            elif entry.is_file(follow_symlinks=False) and entry.name.endswith(suffix):
                files.append((path, entry.stat(follow_symlinks=False).st_size))
    return sorted(files), sorted(links)


# --------------------------------------------------------------------------- zip

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD_SIG, _ZIP64_LOCATOR_SIG = b"PK\x05\x06", b"PK\x06\x07"


def check_zip_directory(fh, size: int, label: str) -> None:
    """Refuse a zip whose central directory is too large, from its end record, before zipfile reads it."""
    if size > MAX_ZIP_BYTES:
        raise InputError(f"{label} is larger than {_size(MAX_ZIP_BYTES)}")
    tail_size = min(size, _EOCD.size + 0xFFFF)  # the record, then a comment of at most 64 KiB
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = tail.rfind(_EOCD_SIG)
    if at < 0 or at + _EOCD.size > len(tail):
        return  # not a zip: zipfile says so in its own words
    _, _, _, _, entries, directory, offset, _ = _EOCD.unpack_from(tail, at)
    zip64 = entries == 0xFFFF or directory == 0xFFFFFFFF or offset == 0xFFFFFFFF or \
        (at >= 20 and tail[at - 20:at - 16] == _ZIP64_LOCATOR_SIG)
    if zip64:
        raise InputError(f"{label} is a ZIP64 archive (for huge archives): zip only the exercise files")
    if entries > MAX_ZIP_ENTRIES or directory > MAX_ZIP_DIRECTORY:
        raise InputError(f"{label} has {entries} entries; at most {MAX_ZIP_ENTRIES} are read: "
                         "zip only the exercise files")
    fh.seek(0)


def is_zip_link(info) -> bool:
    """A zip entry that stores a symbolic link (Unix mode in its external attributes)."""
    return stat.S_ISLNK(info.external_attr >> 16)


# --------------------------------------------------------------------------- JSON

_ESCAPE = re.compile(rb"\\.", re.S)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def check_json_shape(data: bytes, label: str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH or with more than MAX_JSON_CONTAINERS lists and objects.

    Linear and in C: escapes, then strings, are cut out; the brackets left are
    counted, then innermost pairs removed level by level. Malformed JSON passes
    here and fails to parse afterwards.
    """
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", data)).translate(None, _NOT_BRACKETS)
    if len(brackets) > 2 * MAX_JSON_CONTAINERS:
        raise InputError(f"{label} has more than {MAX_JSON_CONTAINERS} JSON lists and objects")
    for _ in range(MAX_JSON_DEPTH):
        inner = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(inner) == len(brackets):
            return
        brackets = inner
    if brackets.replace(b"[]", b"").replace(b"{}", b"") != brackets:
        raise InputError(f"{label} nests JSON more than {MAX_JSON_DEPTH} levels deep: it is not a notebook "
                         "Jupyter wrote")


# --------------------------------------------------------------------------- source code

_TOKEN = re.compile(r"\w+|[^\w\s]")


class SourceBudget:
    """Lines and tokens of code read so far for one submission, checked before each piece is parsed."""

    def __init__(self, what: str):
        self.what = what
        self.lines = 0
        self.tokens = 0

    def charge(self, text: str) -> None:
        self.lines += text.count("\n") + text.count(";") + 1
        if self.lines > MAX_SOURCE_LINES:
            raise InputError(f"{self.what} has more than {MAX_SOURCE_LINES} lines of code; the grader reads at most "
                             "that many: remove pasted data and code the exercises do not need")
        self.tokens += _TOKEN.subn("", text)[1]
        if self.tokens > MAX_SOURCE_TOKENS:
            raise InputError(f"{self.what} has more than {MAX_SOURCE_TOKENS} names, numbers and operators of code; "
                             "the grader reads at most that many: remove pasted data and code the exercises do "
                             "not need")
