"""The lecture notebook's `# Exercise N` headers: hints of where each exercise's cells are.

Headers vary (`#  Exercise 1`, `### Exercise 1:`, `* Exercise 1:`, `Excercise 2`, a docstring),
and a header may also sit in the middle of a code cell. What a cell computes
(`grader.submission.lecture.find`) decides where headers are missing or wrong.

Imports only the standard library: the planner runs on every notebook.
"""

import ast
import difflib
import re

# "Exercise N", also misspelled (Excercise, Excercie, exercice): a word starting "ex" close to "exercise".
_WORD = r"(ex[a-z]{3,9})\s*#?\s*(\d+)"
HEADER = re.compile(r"^\s*#+\s*\**\s*" + _WORD, re.IGNORECASE)
MID_HEADER = re.compile(r"^#+\s*" + _WORD + r"\s*(?::|$)", re.IGNORECASE)
BOLD_HEADER = re.compile(r"^\s*(?:[*\-+]\s*)?\**\s*" + _WORD, re.IGNORECASE)  # **Exercise 1**, * Exercise 1:
DOC_HEADER = re.compile(r"^\s*" + _WORD, re.IGNORECASE)


def _header_number(match) -> int | None:
    """The exercise number of a header match, if its word is "exercise" or a misspelling of it."""
    if match is None:
        return None
    word = match.group(1).lower()
    if word != "exercise" and difflib.SequenceMatcher(None, word, "exercise").ratio() < 0.75:
        return None
    return int(match.group(2))


def leading_header(cell) -> int | None:
    """The exercise number a cell starts with: a `# Exercise N` comment or heading, or a docstring."""
    if cell.kind == "markdown":
        first = next((line for line in cell.raw.splitlines() if line.strip()), "")
        return _header_number(HEADER.match(first)) or _header_number(BOLD_HEADER.match(first))
    if cell.kind != "code":
        return None
    for line in (cell.source or cell.raw).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("pass  # IPython:"):
            continue
        if not stripped.startswith("#"):
            break
        number = _header_number(HEADER.match(line))
        if number is not None:
            return number
    body = cell.tree.body if cell.tree is not None else []
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        first = next((line for line in body[0].value.value.splitlines() if line.strip()), "")
        return _header_number(DOC_HEADER.match(first))
    return None


def mid_headers(cell) -> list[tuple[int, int]]:
    """(line, number) of `# Exercise N:` comment lines at column 0 after the cell's first code line."""
    if cell.kind != "code" or cell.tree is None:
        return []
    real = [node.lineno for node in cell.tree.body if node.lineno not in cell.ipython]  # not `%magic` stand-ins
    if not real:
        return []
    first_code = real[0]
    out = []
    for i, line in enumerate(cell.source.splitlines(), start=1):
        if i > first_code:
            number = _header_number(MID_HEADER.match(line))
            if number is not None:
                out.append((i, number))
    return out


def code_header_numbers(cells) -> set[int]:
    numbers = set()
    for cell in cells:
        if cell.kind == "code":
            lead = leading_header(cell)
            numbers |= ({lead} if lead is not None else set()) | {n for _, n in mid_headers(cell)}
    return numbers


def cell_header(cell, code_numbers: set[int]) -> int | None:
    """A cell's leading header; a markdown heading counts only for exercises with no `# Exercise N` code cell."""
    number = leading_header(cell)
    if cell.kind == "markdown" and number in code_numbers:
        return None  # e.g. notes about exercise 3 written inside exercise 2's section
    return number


def find_headers(cells) -> list[tuple[int, int]]:
    """(cell, exercise number) for every exercise header, in notebook order."""
    code_numbers = code_header_numbers(cells)
    found = []
    for cell in cells:
        number = cell_header(cell, code_numbers)
        if number is not None:
            found.append((cell.number, number))
        found += [(cell.number, n) for _, n in mid_headers(cell)]
    return found
