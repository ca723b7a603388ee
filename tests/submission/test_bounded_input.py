"""Reading a submission before any sandbox: every cap is checked before the bytes are read, links are never followed.

Each class of oversized or tricky input gets a generated submission and a
check that it fails with one clear line (SubmissionError; `grader grade`
exits 2) without the grading process reading it whole, while the honest
parts of a submission are still read. Memory and bytes read are measured in
a fresh subprocess (its peak resident size `VmHWM` and `/proc/self/io`), so
the numbers are the grading process's own: `getrusage`'s `ru_maxrss` would
carry over the parent's peak across exec (the pytest process, torch loaded). No torch is imported here: reading comes first.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, SOLUTIONS
from grader.submission import bounded
from grader.submission.bounded import InputError, check_json_shape
from grader.submission.cells import NotebookError, parse_notebook_bytes
from grader.submission.load import MAX_FILE_BYTES, SubmissionError, load_submission

GIB = 1 << 30


def notebook_bytes(*sources: str, header: str | None = "# Exercise 1") -> bytes:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": header}] if header else []
    cells += [{"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
              for src in sources]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


def measured(path: Path) -> dict:
    """load_submission(path) in a fresh interpreter: its outcome, peak resident memory (MB) and bytes read."""
    code = f"""
import json
from pathlib import Path
def rchar():
    with open("/proc/self/io") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("rchar"))
import grader.submission.notebook  # imported before counting: only the submission's reading is measured
from grader.submission.load import SubmissionError, load_submission
before = rchar()
try:
    load_submission(Path({str(path)!r}))
    error = None
except SubmissionError as err:
    error = str(err)
with open("/proc/self/status") as fh:
    peak_kb = next(int(l.split()[1]) for l in fh if l.startswith("VmHWM"))
print(json.dumps({{"error": error, "read": rchar() - before, "peak_mb": peak_kb / 1024}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def grade_cli(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", "grade", str(path), "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def copy_solutions(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for src in SOLUTIONS.glob("*.py"):
        (folder / src.name).write_bytes(src.read_bytes())
    return folder


# --------------------------------------------------------------------------- zip files

@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """1,500 entries that each inflate to 256 KiB: 375 MB if read, 1.5 MB on disk."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    block = b"#" * (256 << 10)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for i in range(1500):
            archive.writestr(f"f{i:04}.py", block)
    return path


def test_a_zip_of_1500_entries_is_refused_from_its_end_record(zip_bomb, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("zipfile must not read the directory of a zip past the caps")

    monkeypatch.setattr("grader.submission.load.zipfile.ZipFile", never)
    with pytest.raises(SubmissionError, match=r"bomb.zip has 1500 entries; at most 1000 are read"):
        load_submission(zip_bomb)


def test_the_zip_bomb_costs_no_memory_and_is_never_read(zip_bomb):
    result = measured(zip_bomb)
    assert "1500 entries" in result["error"]
    assert result["read"] < 1 << 20     # the end record, not 375 MB of entries
    assert result["peak_mb"] < 150      # it took more than 400 MB before the cap moved ahead of reading


def test_too_many_python_files_are_counted_before_any_is_read(tmp_path, monkeypatch):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(101):
            archive.writestr(f"f{i}.py", "x = 1\n")
    opened = []
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: opened.append(a) or 1 / 0)
    with pytest.raises(SubmissionError, match="the submission has 101 Python files; at most 100 are read"):
        load_submission(path)
    assert opened == []


def test_a_large_entry_is_refused_from_the_central_directory(tmp_path, monkeypatch):
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for src in SOLUTIONS.glob("*.py"):
            archive.write(src, src.name)
        archive.writestr("helpers.py", b"#" * (MAX_FILE_BYTES + 1))
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: 1 / 0)
    with pytest.raises(SubmissionError, match="helpers.py is larger than 1 MiB"):
        load_submission(path)


def test_a_sparse_2_gib_zip_is_refused_from_its_size(tmp_path):
    path = tmp_path / "huge.zip"
    with open(path, "wb") as fh:
        fh.truncate(2 * GIB)  # sparse: no disk used
    result = measured(path)
    assert result["error"] == "huge.zip is larger than 64 MiB"
    assert result["read"] < 1 << 20


def test_zip_symlinks_are_not_read_and_the_report_says_so(tmp_path):
    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for src in SOLUTIONS.glob("*.py"):
            if src.name != "atomic.py":
                archive.write(src, f"work/{src.name}")
        link = zipfile.ZipInfo("work/atomic.py")
        link.external_attr = 0o120777 << 16  # a symbolic link whose target is the stored text
        archive.writestr(link, "../../solutions/atomic.py")
    sub = load_submission(path)
    assert "atomic.py" not in sub.files and "train.py" in sub.files
    assert sub.notes == ["Not read: work/atomic.py (a symbolic link; the grader never follows links: "
                         "submit the file itself)"]


def test_zip64_and_garbage_are_one_line_errors(tmp_path):
    path = tmp_path / "z64.zip"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("atomic.py", "w", force_zip64=True) as fh:
            fh.write(b"x = 1\n")
    load_submission(path)  # a ZIP64 *entry* is fine: only a ZIP64 directory could be huge
    record = bytearray(path.read_bytes())
    at = record.rfind(b"PK\x05\x06")
    record[at + 10:at + 12] = b"\xff\xff"  # the entry count of a ZIP64 directory
    path.write_bytes(bytes(record))
    with pytest.raises(SubmissionError, match="ZIP64 archive"):
        load_submission(path)
    (tmp_path / "junk.zip").write_bytes(b"PK\x05\x06 not really")
    with pytest.raises(SubmissionError, match="junk.zip is not a readable zip file"):
        load_submission(tmp_path / "junk.zip")


# --------------------------------------------------------------------------- folders and links

def test_a_sparse_2_gib_file_is_refused_from_stat_without_reading(tmp_path):
    folder = copy_solutions(tmp_path / "sparse")
    with open(folder / "atomic.py", "wb") as fh:
        fh.truncate(2 * GIB)
    result = measured(folder)
    assert result["error"] == "atomic.py is larger than 1 MiB"
    assert result["read"] < 1 << 20 and result["peak_mb"] < 150


def test_a_symlinked_file_in_a_folder_is_never_followed(tmp_path):
    folder = copy_solutions(tmp_path / "links")
    (folder / "atomic.py").unlink()
    (folder / "atomic.py").symlink_to(SOLUTIONS / "atomic.py")
    (folder / "helpers").mkdir()
    (folder / "helpers" / "x.py").symlink_to("/etc/passwd")
    (folder / "data").symlink_to(SOLUTIONS, target_is_directory=True)  # a folder link is not walked into
    os.mkfifo(folder / "train.py.fifo")
    sub = load_submission(folder)
    assert sorted(sub.files) == ["batchnorm.py", "cross_entropy.py", "embedding.py", "train.py"]
    assert sub.notes == ["Not read: atomic.py (a symbolic link; the grader never follows links: "
                         "submit the file itself)"]


def test_a_named_pipe_is_skipped_without_blocking(tmp_path):
    folder = copy_solutions(tmp_path / "fifo")
    (folder / "atomic.py").unlink()
    os.mkfifo(folder / "atomic.py")
    assert "atomic.py" not in load_submission(folder).files


@pytest.mark.parametrize("name", ["sub", "sub.zip", "nb.ipynb"])
def test_a_submission_that_is_a_link_is_refused(tmp_path, name):
    target = tmp_path / ("real-" + name)
    if name == "sub":
        copy_solutions(target)
    else:
        target.write_bytes(b"")
    (tmp_path / name).symlink_to(target)
    with pytest.raises(SubmissionError, match=f"{name} is a symbolic link: the grader never follows links"):
        load_submission(tmp_path / name)


def test_folder_walk_stops_at_its_caps(tmp_path, monkeypatch):
    folder = copy_solutions(tmp_path / "wide")
    for i in range(30):
        (folder / f"junk{i}.txt").write_text("")
    monkeypatch.setattr(bounded, "MAX_WALK_ENTRIES", 20)
    with pytest.raises(SubmissionError, match="more than 20 files and folders"):
        load_submission(folder)
    monkeypatch.setattr(bounded, "MAX_WALK_ENTRIES", 1000)
    deep = folder / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    monkeypatch.setattr(bounded, "MAX_WALK_DEPTH", 3)
    with pytest.raises(SubmissionError, match="nests more than 3 levels deep"):
        load_submission(folder)
    monkeypatch.setattr(bounded, "MAX_WALK_DEPTH", 5)
    assert len(load_submission(folder).files) == 5


def test_python_source_over_the_budget_is_refused_before_parsing(tmp_path, monkeypatch):
    folder = copy_solutions(tmp_path / "tiny")
    (folder / "helpers.py").write_text("x=1\n" * 25_000)  # 100 KB: under the byte caps
    with pytest.raises(SubmissionError, match="more than 20000 lines of code"):
        load_submission(folder)
    (folder / "helpers.py").write_text("x = [" + "1," * 150_000 + "]\n")  # one line, 300k tokens
    with pytest.raises(SubmissionError, match="more than 200000 names, numbers and operators"):
        load_submission(folder)


# --------------------------------------------------------------------------- notebooks

def test_deeply_nested_json_is_refused_before_parsing(tmp_path):
    deep = b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(NotebookError, match="nests JSON more than 100 levels deep"):
        parse_notebook_bytes(deep, "deep.ipynb")
    (tmp_path / "deep.ipynb").write_bytes(deep)
    proc = grade_cli(tmp_path / "deep.ipynb", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "grader: error: deep.ipynb nests JSON more than 100 levels deep: it is not a notebook " \
                          "Jupyter wrote\n"
    assert not (tmp_path / "r.json").exists()


def test_json_shape_counts_brackets_outside_strings_only():
    in_strings = json.dumps({"cells": [], "s": "[" * 5000 + '\\"{' * 100, "t": "]]]"}).encode()
    check_json_shape(in_strings, "ok.ipynb")
    at_bound = b"[" * bounded.MAX_JSON_DEPTH + b"]" * bounded.MAX_JSON_DEPTH
    check_json_shape(at_bound, "ok.ipynb")
    with pytest.raises(InputError, match="more than 100 levels"):
        check_json_shape(b"[" + at_bound + b"]", "deep.ipynb")
    most = bounded.MAX_JSON_CONTAINERS
    check_json_shape(b"[" + b"[]," * (most - 2) + b"[]]", "wide.ipynb")
    with pytest.raises(InputError, match=f"more than {most} JSON lists and objects"):
        check_json_shape(b"[" + b"[]," * (most - 1) + b"[]]", "wide.ipynb")


def test_a_notebook_of_a_million_tiny_statements_is_refused_in_bounded_memory(tmp_path, monkeypatch):
    path = tmp_path / "tiny.ipynb"
    path.write_bytes(notebook_bytes(*["x=1\n" * 2500] * 100))  # 1 MB, 250,000 statements
    result = measured(path)
    assert result["error"].startswith("tiny.ipynb has more than 3000 top-level statements")
    assert result["peak_mb"] < 150  # 830 MB (and 33 s) before the budget
    import grader.submission.notebook as nb

    monkeypatch.setattr(nb, "statements", lambda cell: pytest.fail("analysed past the budget"))
    with pytest.raises(SubmissionError, match="more than 3000 top-level statements"):
        load_submission(path)
    path.write_bytes(notebook_bytes("x=1;" * 25_000))  # one cell, one line: counted before it is parsed
    with pytest.raises(SubmissionError, match="has more than 20000 lines of code"):
        load_submission(path)


def test_the_statement_budget_is_exact(tmp_path, monkeypatch):
    import grader.submission.cells as nb

    monkeypatch.setattr(nb, "MAX_STATEMENTS", 40)
    body = "import torch\n" + "a = 1\n" * 20
    under = tmp_path / "under.ipynb"
    under.write_bytes(notebook_bytes(body, "def backward_atomic(**fwd):\n    return {}\n" + "b = 2\n" * 18,
                                     header=None))
    assert "atomic.py" in load_submission(under).files  # 21 + 19 = 40 statements: read
    over = tmp_path / "over.ipynb"
    over.write_bytes(notebook_bytes(body, "def backward_atomic(**fwd):\n    return {}\n" + "b = 2\n" * 19,
                                    header=None))
    with pytest.raises(SubmissionError, match="over.ipynb has more than 40 top-level statements"):
        load_submission(over)


def test_too_many_cells_and_a_sparse_notebook(tmp_path, monkeypatch):
    import grader.submission.cells as nb

    monkeypatch.setattr(nb, "MAX_CELLS", 10)
    many = tmp_path / "many.ipynb"
    many.write_bytes(notebook_bytes(*["x = 1"] * 12))
    with pytest.raises(SubmissionError, match="many.ipynb has 13 cells; the grader reads at most 10"):
        load_submission(many)
    sparse = tmp_path / "sparse.ipynb"
    with open(sparse, "wb") as fh:
        fh.truncate(2 * GIB)
    result = measured(sparse)
    assert result["error"] == "sparse.ipynb is larger than 64 MiB" and result["read"] < 1 << 20


def test_lone_surrogates_in_a_notebook_are_read_as_valid_text(tmp_path):
    raw = notebook_bytes("def cross_entropy_backward(logits, Yb):\n    return logits  # \\ud800 \\udfff\n",
                         header=None).replace(b"\\\\ud800 \\\\udfff", b"\\ud800 \\udfff")
    assert b"\\ud800" in raw and b"\\\\ud800" not in raw
    path = tmp_path / "sur.ipynb"
    path.write_bytes(raw)
    sub = load_submission(path)
    text = sub.files["cross_entropy.py"]
    text.encode("utf-8")  # valid: it can be staged
    assert "# \\ud800 \\udfff" in text
    sub.stage(tmp_path / "staged")
