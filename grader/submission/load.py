"""Reading a submission (a folder, a .zip or a notebook) into a private staging folder.

Only regular `.py` files are taken, without following links (a link, in a
folder or a zip, is skipped and said in the report), within caps checked
before anything is read (see `grader.submission.bounded`); the grader reads them as text
and never imports them. A notebook (`.ipynb`) is turned into the same .py
files by `grader.submission.notebook`, or, for the lecture's own notebook, into a plan
of cells (`grader.submission.lecture`).
"""

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grader.submission.bounded import (InputError, SourceBudget, check_zip_directory, is_zip_link, open_regular,
                            read_regular, walk_folder)
from grader.course.registry import EXERCISES
from grader.safe_text import from_bytes, valid

MAX_FILE_BYTES = 1 << 20
MAX_FILES = 100
MAX_TOTAL_BYTES = 16 << 20   # all the .py files read, together


class SubmissionError(Exception):
    """The submission cannot be read at all (shown as one line)."""


@dataclass
class Submission:
    path: Path
    kind: str                 # folder | zip | notebook
    files: dict[str, str]     # file name -> source text
    sha256: str
    notebook: object | None = None  # grader.submission.notebook.NotebookSubmission for a .ipynb
    notes: list[str] = field(default_factory=list)  # for the report: what was not read, and why

    def stage(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.files.items():
            (folder / name).write_text(text, encoding="utf-8")
        return folder


def _digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()


def _too_large(name: str) -> SubmissionError:
    return SubmissionError(f"{name} is larger than {MAX_FILE_BYTES >> 20} MiB")


def _decode(name: str, data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(name)
    return from_bytes(data)


def _check_caps(sizes: dict[str, int]) -> None:
    """The caps on the chosen files, from their sizes as listed: checked before any is read."""
    if len(sizes) > MAX_FILES:
        raise SubmissionError(f"the submission has {len(sizes)} Python files; at most {MAX_FILES} are read")
    for name, size in sizes.items():
        if size > MAX_FILE_BYTES:
            raise _too_large(name)
    if sum(sizes.values()) > MAX_TOTAL_BYTES:
        raise SubmissionError(f"the submission's Python files are larger than {MAX_TOTAL_BYTES >> 20} MiB together")


def _link_note(names: list[str]) -> list[str]:
    if not names:
        return []
    return [f"Not read: {', '.join(valid(n) for n in names)} (a symbolic link; the grader never follows links: "
            "submit the file itself)"]


def _pick_folder(names: list[PurePosixPath]) -> PurePosixPath | None:
    """The folder holding the contract files: the top level, or the one subfolder that has them."""
    contract = {ex.file for ex in EXERCISES.values()}  # a course's own exercises included
    folders = {p.parent for p in names if p.name in contract}
    if PurePosixPath(".") in folders or not folders:
        return PurePosixPath(".")
    if len(folders) == 1:
        return folders.pop()
    raise SubmissionError("the contract files are spread over several folders: "
                          + ", ".join(sorted(valid(f) for f in folders)))


def _read_folder(path: Path) -> tuple[dict[str, str], list[str]]:
    found, links = walk_folder(path, ".py")
    chosen = _pick_folder([rel for rel, _ in found])
    mine = [(rel, size) for rel, size in found if rel.parent == chosen]
    _check_caps({valid(rel.name): size for rel, size in mine})
    budget = SourceBudget("the submission")
    files = {}
    for rel, _ in mine:
        name = valid(rel.name)
        files[name] = _decode(name, read_regular(path / rel, MAX_FILE_BYTES, name))
        budget.charge(files[name])
    return files, _link_note([str(rel) for rel in links if rel.parent == chosen])


def _read_zip(path: Path) -> tuple[dict[str, str], list[str]]:
    fh, info = open_regular(path, valid(path.name))
    with fh:
        check_zip_directory(fh, info.st_size, valid(path.name))  # entry count and directory size, before zipfile
        try:
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            raise SubmissionError(f"{valid(path.name)} is not a readable zip file ({valid(err)})") from None
        with archive:
            return _read_archive(archive)


def _read_archive(archive: zipfile.ZipFile) -> tuple[dict[str, str], list[str]]:
    entries = [i for i in archive.infolist()
               if not i.is_dir() and i.filename.endswith(".py") and "__MACOSX" not in i.filename
               and "__pycache__" not in i.filename]
    entries = [i for i in entries if not PurePosixPath(i.filename).is_absolute()
               and ".." not in PurePosixPath(i.filename).parts]
    links = [i for i in entries if is_zip_link(i)]
    entries = [i for i in entries if not is_zip_link(i)]
    chosen = _pick_folder([PurePosixPath(i.filename) for i in entries])
    mine = [i for i in entries if PurePosixPath(i.filename).parent == chosen]
    _check_caps({valid(i.filename): i.file_size for i in mine})  # sizes from the central directory
    budget = SourceBudget("the submission")
    files = {}
    for info in mine:
        name = valid(PurePosixPath(info.filename).name)
        try:
            with archive.open(info) as fh:
                data = fh.read(MAX_FILE_BYTES + 1)  # a lying directory still decompresses no more than this
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError) as err:
            raise SubmissionError(f"{valid(info.filename)} cannot be read from the zip ({valid(err)})") from None
        files[name] = _decode(valid(info.filename), data)
        budget.charge(files[name])
    return files, _link_note([i.filename for i in links if PurePosixPath(i.filename).parent == chosen])


def _read_notebook(path: Path) -> Submission:
    from grader.submission.notebook import NotebookError, extract, read_notebook

    try:
        nb, data = read_notebook(path)
        files, info = extract(nb, path.name, data)
    except NotebookError as err:
        raise SubmissionError(str(err)) from None
    return Submission(path=path, kind="notebook", files=files, sha256=hashlib.sha256(info.data).hexdigest(),
                      notebook=info)


def load_submission(path: Path) -> Submission:
    path = Path(path)
    try:
        if path.is_symlink():
            raise SubmissionError(f"{valid(path)} is a symbolic link: the grader never follows links, "
                                  "give the submission itself")
        notes = []
        if path.is_dir():
            kind, (files, notes) = "folder", _read_folder(path)
        elif path.is_file() and path.suffix == ".zip":
            kind, (files, notes) = "zip", _read_zip(path)
        elif path.is_file() and path.suffix == ".ipynb":
            return _read_notebook(path)
        elif path.exists():
            raise SubmissionError(f"{valid(path)} is neither a folder, a .zip of the exercise files, "
                                  "nor a notebook (.ipynb)")
        else:
            raise SubmissionError(f"submission not found: {valid(path)}")
    except InputError as err:
        raise SubmissionError(str(err)) from None
    return Submission(path=path, kind=kind, files=files, sha256=_digest(files), notes=notes)
