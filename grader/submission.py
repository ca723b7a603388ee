"""Reading a submission (a folder, a .zip or a notebook) into a private staging folder.

Only regular `.py` files are taken, without following links, within size
caps; the grader reads them as text and never imports them. A notebook
(`.ipynb`) is turned into the same .py files by `grader.notebook`, or, for
the lecture's own notebook, into a plan of cells (`grader.lecture`).
"""

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from grader.exercises import EXERCISES

MAX_FILE_BYTES = 1 << 20
MAX_FILES = 100
CONTRACT_FILES = {ex.file for ex in EXERCISES.values()}


class SubmissionError(Exception):
    """The submission cannot be read at all (shown as one line)."""


@dataclass
class Submission:
    path: Path
    kind: str                 # folder | zip | notebook
    files: dict[str, str]     # file name -> source text
    sha256: str
    notebook: object | None = None  # grader.notebook.NotebookSubmission for a .ipynb

    def stage(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.files.items():
            (folder / name).write_text(text)
        return folder


def _digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()


def _decode(name: str, data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise SubmissionError(f"{name} is larger than {MAX_FILE_BYTES >> 20} MiB")
    return data.decode("utf-8", errors="replace")


def _pick_folder(names: list[PurePosixPath]) -> PurePosixPath | None:
    """The folder holding the contract files: the top level, or the one subfolder that has them."""
    folders = {p.parent for p in names if p.name in CONTRACT_FILES}
    if PurePosixPath(".") in folders or not folders:
        return PurePosixPath(".")
    if len(folders) == 1:
        return folders.pop()
    raise SubmissionError("the contract files are spread over several folders: "
                          + ", ".join(sorted(str(f) for f in folders)))


def _read_folder(path: Path) -> dict[str, str]:
    regular = [p.relative_to(path) for p in path.rglob("*.py")
               if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts
               and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    chosen = _pick_folder([PurePosixPath(p.as_posix()) for p in regular])
    files = {}
    for rel in regular:
        if PurePosixPath(rel.as_posix()).parent == chosen:
            files[rel.name] = _decode(rel.name, (path / rel).read_bytes())
    return files


def _read_zip(path: Path) -> dict[str, str]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise SubmissionError(f"{path.name} is not a readable zip file ({err})") from None
    with archive:
        entries = [i for i in archive.infolist()
                   if not i.is_dir() and i.filename.endswith(".py") and "__MACOSX" not in i.filename
                   and "__pycache__" not in i.filename]
        entries = [i for i in entries if not PurePosixPath(i.filename).is_absolute()
                   and ".." not in PurePosixPath(i.filename).parts]
        chosen = _pick_folder([PurePosixPath(i.filename) for i in entries])
        files = {}
        for info in entries:
            p = PurePosixPath(info.filename)
            if p.parent != chosen:
                continue
            if info.file_size > MAX_FILE_BYTES:
                raise SubmissionError(f"{info.filename} is larger than {MAX_FILE_BYTES >> 20} MiB")
            with archive.open(info) as fh:
                files[p.name] = _decode(p.name, fh.read(MAX_FILE_BYTES + 1))
    return files


def _read_notebook(path: Path) -> Submission:
    from grader.notebook import NotebookError, extract, read_notebook

    try:
        nb, data = read_notebook(path)
        files, info = extract(nb, path.name, data)
    except NotebookError as err:
        raise SubmissionError(str(err)) from None
    return Submission(path=path, kind="notebook", files=files, sha256=hashlib.sha256(info.data).hexdigest(),
                      notebook=info)


def load_submission(path: Path) -> Submission:
    path = Path(path)
    if path.is_dir():
        kind, files = "folder", _read_folder(path)
    elif path.is_file() and path.suffix == ".zip":
        kind, files = "zip", _read_zip(path)
    elif path.is_file() and path.suffix == ".ipynb":
        return _read_notebook(path)
    elif path.exists():
        raise SubmissionError(f"{path} is neither a folder, a .zip of the exercise files, nor a notebook (.ipynb)")
    else:
        raise SubmissionError(f"submission not found: {path}")
    if len(files) > MAX_FILES:
        raise SubmissionError(f"the submission has {len(files)} Python files; at most {MAX_FILES} are read")
    return Submission(path=path, kind=kind, files=files, sha256=_digest(files))
