"""In a batch, a submission sees only its own files: not another's, not what one left behind, not hidden inputs;
and it cannot touch the others: not through its slot's fork server, not by starving the other slots.

With --jobs 1 every submission runs in the same fork server, one after the
other, which is where leaks between submissions would show. A planter
stashes what it gets (public and hidden inputs) in /tmp, its working
directory and a System V message queue; the spy after it reports everything
it can reach (its folder and the ones around it, /tmp, the working
directory, the batch's folders on the host, the grader's plan and the
inputs folder it names, the inputs held in memory) on its public cases,
when hidden inputs must be nowhere in reach. Attackers (tests/hostile/) go
for the fork server itself: its limits (prlimit), its priority, a SIGKILL by
proxy (F_SETOWN + F_SETSIG + O_ASYNC), their own limits (setrlimit), and the
machine (a thread bomb); the honest submissions graded after them in the
same slot, or beside them in the other, must score as if graded alone.
Under bubblewrap.
"""

import json
import os
import resource
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import MAX_SCORE, ROOT, SECRET, SOLUTIONS, TESTS, make_submission
from grader.sandbox import cgroups, levels as sandbox
from grader.config import load_config
from grader.batch.run import Entry, grade_entry, run_entry
from grader.cli import main as cli_main
from grader.submission.integrity import RULES
from grader.sandbox.slot import Slot

HOSTILE = TESTS / "hostile"

pytestmark = pytest.mark.skipif(sys.platform != "linux" or not sandbox.level_works("bwrap"),
                                reason="batch isolation is promised under bubblewrap")

REFERENCE = (SOLUTIONS / "embedding.py").read_text().replace("def embedding_backward(", "def _reference(")

PLANTER = textwrap.dedent('''
    import ctypes, os, uuid

    def embedding_backward(demb, Xb, vocab_size):
        token = uuid.uuid4().hex
        for folder in ("/tmp", os.getcwd()):
            with open(os.path.join(folder, f"stash-{token}.txt"), "w") as fh:
                fh.write("STASH " + repr(Xb.tolist()))
        locked = f"/tmp/stash-locked-{token}"  # a folder nobody may list, holding a stash
        os.makedirs(f"{locked}/inner")
        with open(f"{locked}/inner/stash.txt", "w") as fh:
            fh.write("STASH " + repr(Xb.tolist()))
        os.chmod(f"{locked}/inner", 0)
        os.chmod(locked, 0)
        queue = ctypes.CDLL(None, use_errno=True).msgget(0x5EED, 0o1666)
        print("PLANTED", sorted(os.listdir("/tmp")), "msgget", queue, ctypes.get_errno())
        return _reference(demb, Xb, vocab_size)
''') + REFERENCE

SPY = textwrap.dedent('''
    import ctypes, json, os, sys

    TARGETS = __TARGETS__

    def _tree(top):
        found = {}
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(folder, d))]  # the sandbox's own
            for name in files:
                path = os.path.join(folder, name)
                try:
                    with open(path, "rb") as fh:
                        found[path] = fh.read(300).decode("utf-8", "replace")
                except OSError as err:
                    found[path] = type(err).__name__
        return found

    def _read(path):
        try:
            return sorted(os.listdir(path)) if os.path.isdir(path) else open(path, "rb").read(200).hex()
        except OSError as err:
            return type(err).__name__

    def embedding_backward(demb, Xb, vocab_size):
        from grader.sandbox.inside import harness
        frame, plans = sys._getframe(), []
        while frame is not None:  # up to the harness, whose plan names the inputs folder
            plan = getattr(frame.f_locals.get("self"), "plan", None)
            if isinstance(plan, dict):
                plans.append(plan)
            frame = frame.f_back
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        libc = ctypes.CDLL(None, use_errno=True)
        facts = {
            "tmp": _tree("/tmp"), "cwd": _tree(os.getcwd()),
            "own": sorted(os.listdir(os.path.dirname(os.path.abspath(__file__)))),
            "around": {name: _read(os.path.join(here, name)) for name in os.listdir(here)},
            "targets": {path: _read(path) for path in TARGETS},
            "inputs": sorted({name for plan in plans for name in os.listdir(plan["inputs"])}),
            "cases": sorted({case["name"] for plan in plans for case in plan["cases"]}),
            "preloaded": sorted(harness.PRELOADED),
            "msgget": [libc.msgget(0x5EED, 0), ctypes.get_errno()],
        }
        print("FACTS " + json.dumps(facts))
        return _reference(demb, Xb, vocab_size)
''') + REFERENCE


def test_a_submission_sees_nothing_of_the_others(tmp_path, all_cases):
    course, out = tmp_path / "course", tmp_path / "out"
    make_submission(course / "a_planter", {"embedding.py": PLANTER})
    targets = [str(course), str(course / "a_planter" / "embedding.py"), str(course / "c_after" / "atomic.py"),
               str(out), str(out / "gradebook.sqlite"), str(out / "a_planter.json"), str(ROOT / "grading.yaml"),
               str(tmp_path / "grading.yaml"), str(SOLUTIONS / "atomic.py"), str(tmp_path / "secret.txt")]
    make_submission(course / "b_spy", {"embedding.py": SPY.replace("__TARGETS__", repr(targets))})
    make_submission(course / "c_after")
    (tmp_path / "secret.txt").write_text(SECRET)
    policy = yaml.safe_load((ROOT / "grading.yaml").read_text())
    policy["integrity"] = {"allow": list(RULES)}  # the static scan would stop ctypes and gc before they run
    (tmp_path / "grading.yaml").write_text(yaml.safe_dump(policy))
    assert cli_main(["batch", str(course), "--out", str(out), "--jobs", "1", "--timeout", "5", "--quiet",
                     "--config", str(tmp_path / "grading.yaml"), "--secret-file", str(tmp_path / "secret.txt")]) == 0

    planter = json.loads((out / "a_planter.json").read_text())
    assert planter["score"] == MAX_SCORE and "PLANTED" in planter["output"]["stdout"]
    assert "stash-" in planter["output"]["stdout"]  # /tmp is writable: what is missing later was removed
    assert "msgget -1 1" in planter["output"]["stdout"]  # System V IPC: EPERM

    spy = json.loads((out / "b_spy.json").read_text())
    assert spy["score"] == MAX_SCORE, [e["message"] for e in spy["exercises"]]
    facts = json.loads(next(line for line in spy["output"]["stdout"].splitlines()
                            if line.startswith("FACTS "))[len("FACTS "):])
    text = json.dumps(facts)
    assert "STASH" not in text and "stash-" not in text, "a previous submission's files were left behind"
    assert facts["cwd"] == {}
    assert facts["own"] == sorted(p.name for p in SOLUTIONS.glob("*.py"))
    assert set(facts["around"]) == {"cwd", "inputs", "lib", "submission"}  # the slot's folders, nothing else
    assert facts["around"]["submission"] == facts["own"]
    assert all(value in ("FileNotFoundError", "PermissionError") for value in facts["targets"].values()), \
        facts["targets"]  # no other submission, no output folder, no solutions, no grading.yaml, no secret
    assert facts["msgget"] == [-1, 1]
    # Hidden inputs: on no disk and in no memory while a submission's public cases run.
    assert facts["cases"] and all(not name.startswith("hidden") for name in facts["preloaded"])
    assert not any("hidden" in name for name in facts["inputs"])
    assert any(name.startswith("case-lecture") for name in facts["inputs"])
    for case in all_cases:
        if case.spec.hidden:
            assert repr(case.inputs["Xb"].tolist()) not in json.dumps(spy), case.spec.name


# --- submissions cannot touch each other -----------------------------------------------------

def _reference(file: str) -> str:
    function = {"embedding.py": "embedding_backward", "cross_entropy.py": "cross_entropy_backward",
                "batchnorm.py": "batchnorm_backward", "atomic.py": "backward_atomic"}[file]
    return (SOLUTIONS / file).read_text().replace(f"def {function}(", "def _reference(")


def _attack(name: str) -> dict[str, str]:
    """{contract file: the attack of tests/hostile/NAME, with the reference solution it calls appended}."""
    file = name.split("__")[0] + ".py"
    return {file: (HOSTILE / name).read_text() + "\n\n" + _reference(file)}


# Honest, but it needs memory: 480 MB of address space, which a server whose limit an attacker
# lowered to 400 MB would no longer give it.
HUNGRY = textwrap.dedent('''
    import torch

    def embedding_backward(demb, Xb, vocab_size):
        scratch = torch.empty(60_000_000, dtype=torch.float64)
        del scratch
        return _reference(demb, Xb, vocab_size)
''') + _reference("embedding.py")


# Honest, but it needs CPU: a tenth of a second or so per case (a slow but correct loop), which it
# gets beside a thread bomb only if the CPU is shared fairly between slots.
SLOW = textwrap.dedent('''
    def embedding_backward(demb, Xb, vocab_size):
        total = 0
        for i in range(2_000_000):
            total += i
        assert total == 1999999000000
        return _reference(demb, Xb, vocab_size)
''') + _reference("embedding.py")


def _policy(tmp_path: Path) -> Path:
    policy = yaml.safe_load((ROOT / "grading.yaml").read_text())
    policy["integrity"] = {"allow": list(RULES)}  # so the attacks run: the run-time defences are under test
    (tmp_path / "grading.yaml").write_text(yaml.safe_dump(policy))
    return tmp_path / "grading.yaml"


def _scores(report: dict) -> dict[str, float]:
    return {e["id"]: e["score"] for e in report["exercises"]}


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The honest submissions, each graded on its own: what the batch must give them too."""
    tmp = tmp_path_factory.mktemp("alone")
    course, out = tmp / "course", tmp / "out"
    make_submission(course / "hungry", {"embedding.py": HUNGRY})
    make_submission(course / "plain")
    make_submission(course / "slow", {"embedding.py": SLOW})
    assert cli_main(["batch", str(course), "--out", str(out), "--jobs", "2", "--timeout", "10", "--quiet",
                     "--config", str(_policy(tmp))]) == 0
    return {name: json.loads((out / f"{name}.json").read_text()) for name in ("hungry", "plain", "slow")}


@pytest.fixture(scope="module")
def same_slot(tmp_path_factory):
    """One slot (--jobs 1): an attacker on its fork server, then honest submissions after it."""
    tmp = tmp_path_factory.mktemp("same-slot")
    course, out = tmp / "course", tmp / "out"
    make_submission(course / "a_attacker", {**_attack("embedding__prlimit_server.py"),
                                            **_attack("cross_entropy__sigio_kill.py"),
                                            **_attack("batchnorm__setrlimit.py")})
    make_submission(course / "b_hungry", {"embedding.py": HUNGRY})
    make_submission(course / "c_plain")
    started = time.monotonic()
    assert cli_main(["batch", str(course), "--out", str(out), "--jobs", "1", "--timeout", "10", "--quiet",
                     "--config", str(_policy(tmp))]) == 0
    return out, time.monotonic() - started


def test_a_child_cannot_change_or_signal_its_fork_server(same_slot):
    out, seconds = same_slot
    attacker = json.loads((out / "a_attacker.json").read_text())
    stdout = attacker["output"]["stdout"]
    tampers = [line.split() for line in stdout.splitlines() if line.startswith("TAMPER ")]
    sigio = [line.split() for line in stdout.splitlines() if line.startswith("SIGIO ")]
    assert len(tampers) >= 8 and len(sigio) >= 2, stdout  # the session and the server, at least
    assert all(t[-1] == "PermissionError" for t in tampers), stdout
    assert all(t[-1] == "PermissionError" for t in sigio), stdout
    assert "TAMPER raw" not in stdout and "changed" not in stdout
    setrlimit = [line.split() for line in stdout.splitlines() if line.startswith("SETRLIMIT RLIMIT_")]
    assert len(setrlimit) >= 5 and all(t[-1] == "ValueError" for t in setrlimit), stdout  # EPERM, for Python
    assert f"SETRLIMIT AS now ({4096 << 20}, {4096 << 20})" in stdout
    assert attacker["score"] == MAX_SCORE  # every attempt failed quietly: its own answers are right
    assert "seccomp" in attacker["isolation"]["syscall_filter"]
    assert seconds < 60


def test_the_submissions_after_an_attacker_score_as_if_alone(same_slot, alone):
    out, _ = same_slot
    for name, solo in (("b_hungry", "hungry"), ("c_plain", "plain")):
        report = json.loads((out / f"{name}.json").read_text())
        assert _scores(report) == _scores(alone[solo]) and report["score"] == MAX_SCORE, \
            [e["message"] for e in report["exercises"]]


def test_a_thread_bomb_in_one_slot_does_not_starve_the_other(tmp_path, alone):
    probe = cgroups.create(f"grader-probe-{os.getpid()}")
    if probe is None:
        pytest.skip("no pids cgroup for this user here: batch slots cannot be capped")
    probe.remove()
    course, out = tmp_path / "course", tmp_path / "out"
    make_submission(course / "a_bomb", _attack("atomic__thread_bomb.py"))
    make_submission(course / "b_slow", {"embedding.py": SLOW})
    started = time.monotonic()
    assert cli_main(["batch", str(course), "--out", str(out), "--jobs", "2", "--timeout", "10", "--quiet",
                     "--config", str(_policy(tmp_path))]) == 0
    assert time.monotonic() - started < 60
    bomb = json.loads((out / "a_bomb.json").read_text())
    threads = int(next(line for line in bomb["output"]["stdout"].splitlines() if line.startswith("THREADS ")).split()[1])
    assert 0 < threads < cgroups.TASKS_PER_SLOT, "the slot's threads were not capped"
    assert bomb["exercises"][0]["status"] == "timeout"
    assert bomb["isolation"]["tasks"].startswith(f"pids cgroup: at most {cgroups.TASKS_PER_SLOT}")
    honest = json.loads((out / "b_slow.json").read_text())
    assert _scores(honest) == _scores(alone["slow"]) and honest["score"] == MAX_SCORE, \
        [e["message"] for e in honest["exercises"]]


def test_a_slot_group_caps_its_tasks_and_leaves_nothing_behind(tmp_path):
    group = cgroups.create(f"grader-{os.getpid()}-unit", max_tasks=4)
    if group is None:
        pytest.skip("no pids cgroup for this user here")
    stale = group.folders[0].parent / "grader-999999999-stale"  # a grading process that died (no such pid)
    stale.mkdir()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        started = 0
        try:
            import threading

            group.join()
            stop = threading.Event()
            for _ in range(10):
                threading.Thread(target=stop.wait, daemon=True).start()
                started += 1
        except RuntimeError:
            pass
        finally:
            os.write(write, str(started).encode())
            os._exit(0)
    os.close(write)
    assert int(os.read(read, 16)) == 3  # with the process itself: four tasks
    os.waitpid(child, 0)
    os.close(read)
    again = cgroups.create(f"grader-{os.getpid()}-unit-2")
    assert not stale.exists()  # swept when the next group was made
    for made in (group, again):
        made.remove()
        assert not any(folder.exists() for folder in made.folders)


def test_without_a_cgroup_root_caps_each_slot_by_a_user_of_its_own(tmp_path, monkeypatch, config, public_cases):
    if os.geteuid() != 0:
        pytest.skip("a user of its own per slot needs root")
    monkeypatch.setattr("grader.sandbox.slot.cgroups.create", lambda *args, **kwargs: None)
    bomb = make_submission(tmp_path / "bomb", _attack("atomic__thread_bomb.py"))
    config = load_config(_policy(tmp_path))  # the scan widened: the run-time cap is under test
    slot = Slot(tmp_path / "slot", "bwrap", config)
    try:
        assert slot.wait_ready() and os.stat(f"/proc/{_server_of(slot)}").st_uid == slot.uid != sandbox.UNPRIVILEGED_UID
        result = grade_entry(Entry(name="bomb", path=bomb, content_hash="x"), config, public_cases, 3, slot=slot)
        stdout = result.report.output.stdout
        threads = int(next(line for line in stdout.splitlines() if line.startswith("THREADS ")).split()[1])
        assert 0 < threads < cgroups.TASKS_PER_SLOT, stdout
        assert result.report.isolation.tasks.startswith(f"RLIMIT_NPROC: at most {cgroups.TASKS_PER_SLOT}")
        assert result.report.exercise("atomic").status == "timeout" and result.report.score == 60
    finally:
        slot.close()


def _server_of(slot) -> int:
    """The fork server's pid (on the host) below the slot's sandbox."""
    parents, commands = {}, {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            commands[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
    for pid, command in commands.items():
        up = pid
        while up in parents and up != slot.proc.pid:
            up = parents[up]
        if up == slot.proc.pid and b"--serve" in command and not command[0].endswith(b"bwrap"):
            return pid
    raise AssertionError("no fork server below the slot")


def _lower_memory_limit(pid: int) -> None:
    """prlimit on `pid` from a process of its own user, as a submission without the filter would:
    300 MB more address space than it uses, enough for the server, too little for HUNGRY."""
    owner = os.stat(f"/proc/{pid}").st_uid
    used = next(int(line.split()[1]) << 10 for line in open(f"/proc/{pid}/status") if line.startswith("VmSize:"))
    limit = used + (300 << 20)
    child = os.fork()
    if child == 0:
        code = 1
        try:
            if os.getuid() != owner:
                os.setgid(owner)
                os.setuid(owner)
            resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(child, 0)[1] == 0, "could not lower the server's limit"


def test_a_tampered_fork_server_is_replaced_and_its_submission_graded_again(tmp_path, config, public_cases,
                                                                           monkeypatch):
    from grader import pipeline as grading

    runs, run_submission = [], grading.run_submission
    monkeypatch.setattr(grading, "run_submission", lambda *a, **k: runs.append(run_submission(*a, **k)) or runs[-1])
    # What an attacker could do without the syscall filter, done from outside: the server's memory
    # limit lowered under the next submission. The server notices after the session, the slot
    # replaces it, and the submission is graded again in the new one: it gets its full marks.
    victim = make_submission(tmp_path / "victim", {"embedding.py": HUNGRY})
    slot = Slot(tmp_path / "slot", "bwrap", config)
    try:
        assert slot.wait_ready()
        _lower_memory_limit(_server_of(slot))
        result = grade_entry(Entry(name="victim", path=victim, content_hash="x"), config, public_cases, 10, slot=slot)
        assert result.status == "graded" and result.report.score == MAX_SCORE, result.message
        assert slot.starts == 2 and slot.tampered == []
        assert len(runs) == 2 and grading.score_run(runs[0]).exercise("embedding").score == 0  # the tampered run
        second = grade_entry(Entry(name="again", path=victim, content_hash="y"), config, public_cases, 10, slot=slot)
        assert second.report.score == MAX_SCORE and slot.starts == 2  # an untouched server is kept
    finally:
        slot.close()


def test_a_submission_that_tampers_every_time_is_not_recorded_as_graded(monkeypatch, tmp_path, config):
    class Tampered:  # a slot whose server says, after every session, that its limits changed
        tampered: list = []

    runs = []

    def run_submission(path, config, slot=None, **kwargs):
        runs.append(path)
        slot.tampered = ["RLIMIT_AS"]
        return object()

    monkeypatch.setattr("grader.pipeline.run_submission", run_submission)
    entry = Entry(name="x", path=make_submission(tmp_path / "x"), content_hash="x")
    result = run_entry(entry, config, [], 5, slot=Tampered())
    assert len(runs) == 2 and result.status == "error" and result.run is None
    assert "RLIMIT_AS" in result.message and "not graded" in result.message
