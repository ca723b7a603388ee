"""A control group per batch job slot: a cap on its processes and threads, and a fair share of the CPU.

A thread bomb in one slot must not starve the submissions of the others. So
each slot's sandbox starts inside a cgroup of its own, made by the grading
process where this machine lets it: the `pids` controller caps the tasks
(processes and threads) of everything in the slot, and where the `cpu`
controller is there too, sibling groups share the CPU equally however many
threads one of them runs. cgroup v2 (one hierarchy) and v1 (one per
controller) are both handled; without a writable pids controller (an
unprivileged user without delegation) there is no group, and the report says
that tasks are not capped.
"""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

TASKS_PER_SLOT = 64  # a slot needs about a dozen (bwrap, the server, a session, an exercise child, torch's threads)


@dataclass
class SlotGroup:
    """The cgroup folders of one slot (one per hierarchy: v1 has pids and cpu apart)."""

    folders: list[Path]
    max_tasks: int
    cpu: bool  # the CPU is shared fairly between slots
    created: list[Path] = field(default_factory=list)

    def join(self) -> None:
        """Put the calling process in the group; runs between fork and exec (its children follow)."""
        for folder in self.folders:
            with open(folder / "cgroup.procs", "w") as fh:
                fh.write("0")

    def holds(self, pid: int) -> bool:
        """Whether `pid` is in this slot's pids group."""
        try:
            return str(pid) in (self.folders[0] / "cgroup.procs").read_text().split()
        except OSError:
            return False

    def describe(self) -> str:
        share = ", a fair share of the CPU" if self.cpu else ""
        return f"pids cgroup: at most {self.max_tasks} processes and threads per slot{share}"

    def remove(self, wait: float = 2.0) -> None:
        """Remove the folders once the slot's last processes are gone (they are being reaped as this runs)."""
        deadline = time.monotonic() + wait
        for folder in reversed(self.created):
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break  # an empty group left behind is harmless
                    time.sleep(0.01)
        self.created = []


def _mounts() -> dict[str, Path]:
    """Mount points by controller ('pids', 'cpu'; 'unified' for cgroup v2)."""
    found = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, kinds = left.split(), right.split()
        if len(parts) < 5 or len(kinds) < 3:
            continue
        if kinds[0] == "cgroup2":
            found.setdefault("unified", Path(parts[4]))
        elif kinds[0] == "cgroup":
            for option in kinds[2].split(","):
                if option in ("pids", "cpu"):
                    found.setdefault(option, Path(parts[4]))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path by controller ('' for cgroup v2)."""
    paths = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _sweep(parent: Path) -> None:
    """Remove the empty groups of grading processes that died without removing them (killed, say)."""
    for folder in parent.glob("grader-*-*"):
        owner = folder.name.split("-")[1]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            try:
                folder.rmdir()  # refused while a process is in it
            except OSError:
                pass


def _make(parent: Path, name: str, created: list[Path]) -> Path:
    _sweep(parent)
    folder = parent / name
    folder.mkdir()
    created.append(folder)
    return folder


def _v2_parent(mount: Path, own: str) -> Path | None:
    """A cgroup v2 folder whose children get the pids controller: the root (as root) or our own (delegated)."""
    for parent in (mount, mount / own.lstrip("/")):
        control = parent / "cgroup.subtree_control"
        try:
            if "pids" not in control.read_text().split():
                control.write_text("+pids")
            if os.access(parent, os.W_OK):
                return parent
        except OSError:
            continue
    return None


def create(name: str, max_tasks: int = TASKS_PER_SLOT) -> SlotGroup | None:
    """A new group for one slot, or None where this machine offers none to this user."""
    if not os.path.isdir("/proc/self"):
        return None
    mounts, own = _mounts(), _own_paths()
    created: list[Path] = []
    try:
        if "pids" in mounts and "pids" in own:  # cgroup v1
            pids = _make(mounts["pids"] / own["pids"].lstrip("/"), name, created)
            (pids / "pids.max").write_text(str(max_tasks))
            folders = [pids]
            if "cpu" in mounts and "cpu" in own:
                try:
                    folders.append(_make(mounts["cpu"] / own["cpu"].lstrip("/"), name, created))
                except OSError:
                    pass
            return SlotGroup(folders, max_tasks, cpu=len(folders) > 1, created=created)
        if "unified" in mounts and "" in own:
            parent = _v2_parent(mounts["unified"], own[""])
            if parent is None:
                return None
            try:
                (parent / "cgroup.subtree_control").write_text("+cpu")
            except OSError:
                pass
            folder = _make(parent, name, created)
            (folder / "pids.max").write_text(str(max_tasks))
            cpu = "cpu" in (folder / "cgroup.controllers").read_text().split()
            return SlotGroup([folder], max_tasks, cpu=cpu, created=created)
    except OSError:
        SlotGroup([], max_tasks, False, created).remove()
    return None
