"""Text that came from a student is data: always valid Unicode, never interpreted by a view.

Exception messages, prints, tracebacks, file, folder and batch entry names
can hold anything: lone surrogates (which no encoder accepts, so a report
could not be written), terminal escape sequences (clear the screen, set the
window title, write the clipboard, paint a fake green total), NUL bytes, bidi
overrides. Every view uses these few helpers, so the rules live in one place:

- `valid`: any str made encodable as UTF-8; a lone surrogate becomes a
  visible escape (`\\xff` for an undecodable file-name byte, else `\\ud800`);
- `printable`: also control characters shown as escapes (`\\x1b`), for the
  terminal and every text view; newlines and tabs kept only when asked;
- `one_line`: printable, with all whitespace runs collapsed to one space;
- `clean_tree`: a function applied to every string of a JSON-like value.

Only the standard library: cheap to import in every view.
"""

import re

# Lone surrogates: a Python str may hold them, UTF-8 may not.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how JSON spells one (a pair, valid, matches too)
# Control characters (C0, DEL, C1), line/paragraph separators and bidi controls
# (the "Trojan source" ones): shown escaped, never sent to a terminal or a page.
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff"
_CONTROL_LINE = re.compile(f"[\t\n{_CONTROL}]")      # one line: tab and newline too
_CONTROL_BLOCK = re.compile(f"[{_CONTROL}]")         # several lines: tab and newline kept


def _surrogate(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (Python's surrogateescape for file names)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def valid(text) -> str:
    """`text` as a str that can always be encoded as UTF-8 (None becomes "")."""
    text = "" if text is None else str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub(_surrogate, text)


def json_holds_surrogates(text: str) -> bool:
    """Whether JSON `text` may parse to a string with a lone surrogate: it holds one, or a \\uD800-\\uDFFF escape.

    False means every string `json.loads(text)` gives is valid already (so `clean_tree` would change nothing).
    """
    return _SURROGATE.search(text) is not None or _SURROGATE_ESCAPE.search(text) is not None


def from_bytes(data: bytes) -> str:
    """Bytes from a student (output, a file) as text: invalid UTF-8 becomes U+FFFD."""
    return data.decode("utf-8", errors="replace")


def printable(text, *, multiline: bool = False) -> str:
    """Valid, with control characters and escape sequences shown as `\\x..` escapes.

    `multiline` keeps newlines and tabs (tracebacks, captured output); a carriage
    return is always escaped, so a line cannot be overwritten on screen.
    """
    text = valid(text)
    pattern = _CONTROL_BLOCK if multiline else _CONTROL_LINE
    if multiline:
        text = text.replace("\r\n", "\n")
    return pattern.sub(_escape, text)


def one_line(text) -> str:
    """Printable on one line: every run of whitespace (newlines too) becomes one space."""
    return printable(" ".join(valid(text).split()))


MAX_DEPTH = 64  # deeper than anything the grader writes: cut, never a RecursionError


def clean_tree(value, clean=valid, _depth: int = 0):
    """`clean` applied to every string (keys included) of a structure of dicts, lists and tuples.

    Parts nested deeper than MAX_DEPTH become None.
    """
    if isinstance(value, str):
        return clean(value)
    if _depth >= MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        return None
    if isinstance(value, dict):
        return {clean_tree(k, clean, _depth + 1): clean_tree(v, clean, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clean_tree(v, clean, _depth + 1) for v in value)
    return value
