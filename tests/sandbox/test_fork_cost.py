"""The fork server maps its heap with huge pages, so every session and exercise child forks cheaply."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r"""
import os, sys
import torch
from grader.sandbox.inside.forkserver import collapse_huge_pages

def huge_kib():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0

before = huge_kib()
done = collapse_huge_pages()
assert done % (2 << 20) == 0, done
after = huge_kib()
pid = os.fork()
if pid == 0:  # a child of the collapsed process computes and writes as usual
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    os._exit(0 if float((x @ x.T).sum()) == 83.0 else 1)
_, status = os.waitpid(pid, 0)
print(done, before, after, os.waitstatus_to_exitcode(status))
"""


def _thp_available() -> bool:
    try:
        enabled = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    return "[never]" not in enabled and (major, minor) >= (6, 1)  # MADV_COLLAPSE came in Linux 6.1


def test_collapse_keeps_the_process_working_and_maps_huge_pages_where_the_kernel_can():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.returncode == 0, out.stderr
    done, before, after, child = (int(x) for x in out.stdout.split())
    assert child == 0
    if not _thp_available():
        pytest.skip("no transparent huge pages here: nothing to collapse, nothing lost")
    assert done >= 32 << 20, "most of torch's heap should be collapsed"
    assert after - before >= (done >> 10) // 2
