"""In a batch, a submission sees only its own files: not another's, not what one left behind, not hidden inputs.

With --jobs 1 every submission runs in the same fork server, one after the
other, which is where leaks between submissions would show. A planter
stashes what it gets (public and hidden inputs) in /tmp, its working
directory and a System V message queue; the spy after it reports everything
it can reach (its folder and the ones around it, /tmp, the working
directory, the batch's folders on the host, the grader's plan and the
inputs folder it names, the inputs held in memory) on its public cases,
when hidden inputs must be nowhere in reach. Under bubblewrap.
"""

import json
import sys
import textwrap

import pytest
import yaml

from conftest import ROOT, SECRET, SOLUTIONS, make_submission
from grader import sandbox
from grader.cli import main as cli_main
from grader.integrity import RULES

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
        from grader import harness
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
    assert planter["score"] == 100 and "PLANTED" in planter["output"]["stdout"]
    assert "stash-" in planter["output"]["stdout"]  # /tmp is writable: what is missing later was removed
    assert "msgget -1 1" in planter["output"]["stdout"]  # System V IPC: EPERM

    spy = json.loads((out / "b_spy.json").read_text())
    assert spy["score"] == 100, [e["message"] for e in spy["exercises"]]
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
