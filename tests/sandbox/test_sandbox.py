"""Isolation levels and the pieces of the boundary: what a worker can see and do, at each level."""

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from conftest import ROOT, SOLUTIONS
from grader.sandbox import levels as sandbox
from grader.sandbox.capture import CappedStream
from grader.sandbox.inside import channel
from grader.sandbox.handle import CleanFrames
from grader.sandbox.inside.channel import FrameReader, ProtocolError, Timeout, send
from grader.config import ConfigError, IntegrityConfig, Limits
from grader.submission.integrity import RULES

LEVELS = ["bwrap", "unshare", "process"]
PYTHON = sys.executable

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="namespaces and seccomp are Linux features")

# Prints what the worker can see, as one JSON line, then answers correctly (so the exercise passes).
PROBE = textwrap.dedent('''
    import json, os, resource, sys
    import grader

    def _can_write(path):
        try:
            with open(path, "a"):
                return True
        except OSError:
            return False

    def _status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return line.split()[1:]

    FACTS = {
        "uid": os.getuid(), "cap_eff": _status("CapEff")[0], "no_new_privs": _status("NoNewPrivs")[0],
        "seccomp": _status("Seccomp")[0], "env": sorted(os.environ), "sys_path": sys.path,
        "grader_file": grader.__file__, "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "exists": {p: os.path.exists(p) for p in __PATHS__},
        "read": {p: open(p).read() if os.path.isfile(p) else None for p in __PATHS__},
        "writable": {p: _can_write(p) for p in ["/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger",
                                                 __file__, grader.__file__]},
        "cwd": os.getcwd(), "cwd_entries": os.listdir("."), "stdin": os.readlink("/proc/self/fd/0"),
        "limits": {"RLIMIT_AS": resource.getrlimit(resource.RLIMIT_AS)[0],
                   "RLIMIT_CPU": resource.getrlimit(resource.RLIMIT_CPU)[0],
                   "RLIMIT_FSIZE": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
                   "RLIMIT_NOFILE": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                   "RLIMIT_CORE": resource.getrlimit(resource.RLIMIT_CORE)[0]},
    }
    print("FACTS " + json.dumps(FACTS))
''')


def probe_submission(submission, world_paths):
    reference = (SOLUTIONS / "embedding.py").read_text()
    return submission(replace={"embedding.py": PROBE.replace("__PATHS__", repr(world_paths)) + reference})


def facts(report) -> dict:
    line = next(line for line in report.output.stdout.splitlines() if line.startswith("FACTS "))
    return json.loads(line.removeprefix("FACTS "))


@pytest.fixture
def secrets(tmp_path, monkeypatch):
    value = f"env-secret-{uuid.uuid4()}"
    monkeypatch.setenv("GRADER_SECRET", value)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(f"file-secret-{uuid.uuid4()}")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "report.json").write_text("earlier report")
    paths = [str(secret_file), str(SOLUTIONS / "atomic.py"), str(ROOT / "grading.yaml"), str(out_dir / "report.json"),
             str(ROOT / "grader" / "scoring" / "score.py")]
    return value, secret_file, paths


def needs(level: str):
    return pytest.mark.skipif(not sandbox.level_works(level), reason=f"{level} does not work on this machine")


@needs("bwrap")
def test_auto_picks_bubblewrap_where_it_works():
    assert sandbox.choose_level("auto") == "bwrap"


def test_a_level_that_does_not_work_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.level_works.cache_clear()
    try:
        with pytest.raises(ConfigError, match="isolation level 'bwrap' does not work on this machine"):
            sandbox.choose_level("bwrap")
        assert sandbox.choose_level("auto") == "process"
    finally:
        sandbox.level_works.cache_clear()


@pytest.mark.parametrize("level", [pytest.param(level, marks=needs(level)) for level in LEVELS])
def test_each_level_grades_correct_code_and_says_what_it_hides(level, secrets, submission, grade_it, config):
    env_secret, secret_file, paths = secrets
    lenient = config.model_copy(update={"integrity": IntegrityConfig(allow=list(RULES))})  # the probe uses os, open
    report = grade_it(probe_submission(submission, paths), isolation=level, config=lenient)
    assert report.score == report.max_score, [(e.id, e.message) for e in report.exercises]
    assert report.isolation.level == level and report.isolation.hides_files == (level == "bwrap")
    seen = facts(report)
    assert "GRADER_SECRET" not in seen["env"] and env_secret not in report.model_dump_json()
    assert set(seen["env"]) - {"PWD"} <= set(sandbox.worker_env(sandbox.Mounts(ROOT, ROOT, ROOT, ROOT)))
    assert seen["no_new_privs"] == "1" and seen["seccomp"] == "2"  # the syscall filter is on
    limits = Limits()
    assert seen["limits"] == {"RLIMIT_AS": limits.memory_mb << 20, "RLIMIT_CPU": limits.cpu_seconds,
                              "RLIMIT_FSIZE": limits.file_size_mb << 20, "RLIMIT_NOFILE": limits.open_files,
                              "RLIMIT_CORE": 0}
    assert seen["stdin"] == "/dev/null" and seen["cwd_entries"] == []
    assert str(ROOT) not in seen["sys_path"] and not seen["grader_file"].startswith(str(ROOT))
    if level == "bwrap":
        assert not any(ok for path, ok in seen["writable"].items() if path.endswith(".py"))  # submission, grader
        assert not any(seen["exists"].values()), seen["exists"]  # solutions, grading.yaml, secrets, reports
        assert secret_file.read_text() not in report.model_dump_json()
        assert "BEGIN SOLUTION" not in report.output.stdout
        assert not seen["writable"]["/proc/sys/kernel/core_pattern"]
        assert not seen["writable"]["/proc/sysrq-trigger"]
        if os.geteuid() == 0:
            assert seen["uid"] == sandbox.UNPRIVILEGED_UID and seen["cap_eff"] == "0000000000000000"
        assert len(seen["pids"]) <= 4  # bwrap's init, the worker, this child
        assert "isolation" not in report.isolation.description or "NOT hidden" not in report.isolation.description
    else:
        assert all(seen["exists"].values())  # the difference: nothing is hidden at these levels
        assert seen["read"][str(secret_file)] == secret_file.read_text()
        assert "BEGIN SOLUTION" in report.output.stdout
        assert "NOT hidden" in report.isolation.description
    if level == "unshare":
        assert len(seen["pids"]) <= 4  # a private /proc: the grader's environment is out of reach


@needs("bwrap")
def test_the_bwrap_command_binds_no_part_of_the_repository(tmp_path):
    folders = [tmp_path / name for name in ("inputs", "submission", "cwd")]
    for folder in folders:
        folder.mkdir()
    mounts = sandbox.prepare(sandbox.Mounts(*folders))
    cmd = sandbox._wrap("bwrap", ["python"], mounts, Limits())
    sources = [os.path.realpath(cmd[i + 1]) for i, arg in enumerate(cmd) if arg == "--ro-bind"]
    for source in sources:  # neither the repository nor a folder above it (its .venv is fine)
        assert not (str(ROOT) + os.sep).startswith(source.rstrip(os.sep) + os.sep), source
    assert str(mounts.lib) in sources and (mounts.lib / "grader" / "sandbox" / "inside" / "__main__.py").is_file()
    assert ["--tmpfs", str(mounts.cwd)] == cmd[cmd.index(str(mounts.cwd)) - 1:cmd.index(str(mounts.cwd)) + 1]
    assert "--bind" not in cmd  # nothing of the host is writable


def _run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([PYTHON, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def test_the_syscall_filter_stops_processes_signals_and_sockets_but_not_threads():
    result = _run_python('''
        import os, signal, socket, subprocess, threading
        from grader.sandbox.inside import confine
        assert confine.install_filter()
        def blocked(fn):
            try:
                fn()
            except PermissionError:
                return True
            return False
        assert blocked(os.fork)
        assert blocked(lambda: subprocess.run(["true"]))
        assert blocked(lambda: os.execv("/bin/true", ["true"]))
        assert blocked(socket.socket)
        assert blocked(lambda: os.kill(os.getppid(), 0))
        assert blocked(lambda: os.kill(-1, 0))
        assert blocked(lambda: os.killpg(os.getpgid(0), 0))
        assert blocked(lambda: os.memfd_create("x"))
        os.kill(os.getpid(), 0)  # itself: allowed
        out = []
        t = threading.Thread(target=lambda: out.append(1)); t.start(); t.join()
        assert out == [1]
        print("ok")
    ''')
    assert result.stdout.strip() == "ok", result.stderr


def test_the_syscall_filter_keeps_other_processes_limits_priorities_and_signals_out_of_reach():
    # This test process stands for the fork server: the same user, so only the filter stands in the way.
    import resource

    before = (resource.getrlimit(resource.RLIMIT_AS), os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0))
    result = _run_python('''
        import ctypes, errno, fcntl, os, resource
        from grader.sandbox.inside import confine
        libc = ctypes.CDLL(None, use_errno=True)
        confine.prepare_filter()  # as the worker does: the part without pid rules, built before the fork
        assert confine.install_filter()
        def blocked(fn, error=PermissionError):
            try:
                fn()
            except error:
                return True
            return False
        parent = os.getppid()
        assert blocked(lambda: resource.prlimit(parent, resource.RLIMIT_AS, (1 << 28, 1 << 28)))
        assert blocked(lambda: resource.prlimit(parent, resource.RLIMIT_NPROC))
        assert blocked(lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)), ValueError)  # even its own
        assert resource.getrlimit(resource.RLIMIT_AS)  # reading its own: allowed
        # High garbage bits in a raw system call make it fail, never pass (prlimit64 = 302, kill = 62).
        if os.uname().machine == "x86_64":
            new = (ctypes.c_ulong * 2)(1 << 28, 1 << 28)
            assert libc.syscall(ctypes.c_long(302), ctypes.c_long((1 << 32) | parent), 9, new, None) == -1
            assert libc.syscall(ctypes.c_long(62), ctypes.c_long((1 << 32) | parent), 9) == -1
            assert ctypes.get_errno() == errno.EPERM
        read, write = os.pipe()
        for command in (fcntl.F_SETOWN, 10, 15):  # F_SETOWN, F_SETSIG, F_SETOWN_EX: signals by proxy
            assert blocked(lambda: fcntl.fcntl(read, command, parent))
        assert blocked(lambda: fcntl.ioctl(read, 0x8901, (parent).to_bytes(4, "little")))  # FIOSETOWN
        fcntl.fcntl(read, fcntl.F_SETFL, os.O_NONBLOCK)  # other fcntl commands still work
        assert blocked(lambda: os.setpriority(os.PRIO_PROCESS, parent, 19))
        assert blocked(lambda: os.setpriority(os.PRIO_USER, 0, 19))  # every process of this user
        assert blocked(lambda: os.sched_setaffinity(parent, {0}))
        os.setpriority(os.PRIO_PROCESS, 0, 1)  # its own: allowed
        os.sched_setaffinity(0, os.sched_getaffinity(0))
        print("ok")
    ''')
    assert result.stdout.strip() == "ok", result.stderr
    assert (resource.getrlimit(resource.RLIMIT_AS), os.getpriority(os.PRIO_PROCESS, 0),
            os.sched_getaffinity(0)) == before


def test_without_libseccomp_the_filter_says_so(monkeypatch):
    from grader.sandbox.inside import confine

    monkeypatch.setattr(confine, "_SECCOMP", "libseccomp is not available (test)")
    assert confine.build_filter(os.getpid()) is None
    assert confine.install_filter() is False  # nothing installed in this process: no filter was built
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    from grader.sandbox.handle import filter_status

    status = filter_status()
    assert status.startswith("none:") and "pyseccomp" in status and "without a syscall filter" in status


def test_the_guard_keeps_autograd_off_everywhere_and_records_attempts():
    result = _run_python('''
        import threading, torch
        from grader.sandbox.inside import guard
        seen = []
        guard.report = seen.append
        guard.install()
        x = torch.ones(3)
        attempts = [lambda: x.sum().backward(), lambda: x.requires_grad_(), lambda: torch.enable_grad().__enter__(),
                    lambda: torch.set_grad_enabled(True), lambda: torch.autograd.grad(x.sum(), x),
                    lambda: torch.func.grad(lambda v: v.sum())(x), lambda: torch.func.jacfwd(lambda v: v)(x),
                    lambda: torch.autograd.functional.jacobian(lambda v: v, x),
                    lambda: torch.inference_mode(False).__enter__()]
        for attempt in attempts:
            try:
                attempt()
                raise SystemExit("not blocked")
            except guard.AutogradNotAllowed:
                pass
        in_thread = []  # a new thread records no graph either (grad mode starts on there, the keys stay off)
        t = threading.Thread(target=lambda: in_thread.append((torch.ones(2, requires_grad=True) * 2).requires_grad))
        t.start(); t.join()
        with torch.no_grad():
            pass
        torch.set_grad_enabled(False)
        assert in_thread == [False] and not torch.is_grad_enabled()
        assert len(seen) == len(attempts) and all("by hand" in s["message"] for s in seen)
        print("ok")
    ''')
    assert result.stdout.strip() == "ok", result.stderr


def test_the_guard_blocks_below_python_and_keeps_nothing_it_replaced():
    result = _run_python('''
        import sys, types, torch
        from grader.sandbox.inside import guard
        seen = []
        guard.report = seen.append
        C = torch._C
        originals = [C._set_grad_enabled, C._set_fwd_grad_enabled, C._InferenceMode,
                     torch.autograd.Variable._execution_engine, torch.Tensor.backward, torch.Tensor.requires_grad_,
                     *(getattr(C, name) for name in guard.UNSAFE if hasattr(C, name))]
        keep = guard.install()
        ids = {id(o) for o in originals}
        for module in list(sys.modules.values()):  # no module hands one out
            assert not any(id(v) in ids for v in vars(module).values()), module
        for value in vars(guard).values():  # nor a closure, default or attribute of the guard's own functions
            for fn in ([value] if isinstance(value, types.FunctionType) else []):
                cells = [c.cell_contents for c in fn.__closure__ or ()]
                assert not any(id(v) in ids for v in [*cells, *(fn.__defaults__ or ())]), fn
        for fn in (C._set_grad_enabled, C._set_fwd_grad_enabled, torch.Tensor.requires_grad_, torch.Tensor.backward):
            assert not any(id(c.cell_contents) in ids for c in getattr(fn, "__closure__", None) or ()), fn
        x = torch.randn(4, 3)
        C.TensorBase.requires_grad_(x)  # the C type itself cannot be patched: no graph is recorded anyway
        assert (x * 2).sum().grad_fn is None
        kernels = [lambda: torch.ops.aten.tanh_backward(x, x),
                   lambda: torch.ops.aten._softmax_backward_data(x, x, 1, x.dtype),
                   lambda: torch.ops.aten._log_softmax_backward_data(x, x, 1, x.dtype),
                   lambda: torch.ops.aten.nll_loss_backward(torch.tensor(1.0), x, torch.tensor([0, 1, 2, 0]),
                                                            None, 1, -100, torch.tensor(4.0)),
                   lambda: torch.ops.aten.native_batch_norm_backward(x, x, None, None, None, None, None, True,
                                                                     1e-5, [True, True, True]),
                   lambda: torch.ops.aten.embedding_dense_backward(x, torch.tensor([0, 1, 2, 0]), 5, -1, False),
                   lambda: torch.autograd.Variable._execution_engine.run_backward((x,), (x,), False, False, (x,),
                                                                                   False, False)]
        for kernel in kernels:
            try:
                kernel()
                raise SystemExit("not blocked")
            except guard.AutogradNotAllowed:
                pass
        assert len(seen) == len(kernels)
        for name in ("_dispatch_tls_set_dispatch_key_excluded", "_ForceDispatchKeyGuard", "_ImperativeEngine",
                     "_dispatch_library"):
            assert not hasattr(C, name), name  # nothing left to lift the exclusion or re-register kernels
        import torch.nn.functional as F
        y = F.cross_entropy(x, torch.tensor([0, 1, 2, 0])) + torch.einsum("ij,kj->", x, x) + F.one_hot(
            torch.tensor([1]), 3).sum() + torch.zeros(5, 3).index_add_(0, torch.tensor([0, 0, 1, 4]), x).sum()
        print(y.item() == y.item(), x[:1])  # forward maths and printing still work
        print("ok")
    ''')
    assert result.stdout.strip().endswith("ok"), result.stderr


def _staged(tmp_path):
    lib = sandbox.stage_package(tmp_path / "lib")
    return lib, {p.relative_to(lib / "grader").as_posix() for p in (lib / "grader").rglob("*.py")}


def test_only_the_worker_modules_are_staged(tmp_path, monkeypatch):
    lib, staged = _staged(tmp_path)
    inside = {f"sandbox/inside/{name}.py" for name in ("__init__", "__main__", "channel", "confine", "forkserver",
                                                       "guard", "harness", "lecture_cells", "nbrun", "session",
                                                       "statements", "train_loop", "verdicts")}
    assert staged == inside | {"__init__.py", "sandbox/__init__.py", "course/__init__.py", "course/mlp.py"}
    # the course's definitions (and their build code, which makes the answer key) never reach the sandbox
    assert not {p for p in staged if p.startswith("course/") and p not in ("course/__init__.py", "course/mlp.py")}
    assert not {p.split("/")[0] for p in staged} & {"scoring", "feedback", "batch", "release", "outputs"}
    assert not staged & {"course/cases.py", "pipeline.py", "report.py", "config.py", "sandbox/runner.py"}
    monkeypatch.setattr(sandbox, "WORKER_ENTRY", (*sandbox.WORKER_ENTRY, "scoring/score.py"))
    with pytest.raises(RuntimeError, match="grader.scoring(.score)? is the grading side or the answer key"):
        sandbox.worker_modules.__wrapped__()


def test_the_staged_copy_runs_alone_and_refuses_the_rest(tmp_path):
    lib, staged = _staged(tmp_path)
    code = textwrap.dedent('''
        import importlib, sys
        sys.path.insert(0, sys.argv[1])
        from grader.sandbox.inside import __main__ as entry
        entry.refuse_unstaged()
        for name in sys.argv[2].split(","):  # every staged module imports with nothing else of the package
            importlib.import_module("grader." + name)
        from grader.sandbox.inside import harness, guard, forkserver, lecture_cells, nbrun  # noqa: F401
        refused = []
        for name in ("course.cases", "course.registry", "course.exercises.atomic", "course.steps", "course.mistakes",
                     "scoring.score", "feedback.engine", "pipeline", "mlp_reference", "report", "config",
                     "sandbox.runner", "batch"):
            try:
                importlib.import_module("grader." + name)
            except ModuleNotFoundError:
                refused.append(name)
        assert all(m.__file__.startswith(sys.argv[1]) for n, m in sys.modules.items() if n.startswith("grader")), \
            [m.__file__ for n, m in sys.modules.items() if n.startswith("grader")]
        print("refused", ",".join(refused))
    ''')
    # The repository's own environment, where an editable install could find grader.course.cases in the repository.
    modules = sorted(name.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for name in staged
                     if name != "__init__.py")
    result = subprocess.run([PYTHON, "-c", code, str(lib), ",".join(modules)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.stdout.strip() == ("refused course.cases,course.registry,course.exercises.atomic,course.steps,"
                                     "course.mistakes,scoring.score,feedback.engine,pipeline,mlp_reference,report,"
                                     "config,sandbox.runner,batch"), \
        result.stderr


def test_frames_are_size_checked_before_anything_is_read():
    r, w = os.pipe()
    os.write(w, b"BPN1" + (10**9).to_bytes(4, "big") + (0).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="too large"):
        FrameReader(r).read()
    os.close(r)
    os.close(w)


def test_a_half_frame_never_blocks_past_the_deadline():
    r, w = os.pipe()
    os.write(w, b"BPN1\0\0")
    started = time.monotonic()
    with pytest.raises(Timeout):
        FrameReader(r).read(deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 2
    os.close(r)
    os.close(w)


def test_the_total_is_capped():
    r, w = os.pipe()
    for _ in range(3):
        send(w, {"type": "result"}, b"x" * 1000)
    reader = FrameReader(r, max_total=2500)
    reader.read()
    reader.read()
    with pytest.raises(ProtocolError, match="far larger"):
        reader.read()
    os.close(r)
    os.close(w)


def test_a_frame_written_in_pieces_arrives_whole(monkeypatch):
    def a_few_bytes_at_a_time(fd, parts):  # what a pipe may do: accept part of a write
        return os.write(fd, bytes(b"".join(parts))[:7])

    monkeypatch.setattr(channel, "_writev", a_few_bytes_at_a_time)
    r, w = os.pipe()
    blob = bytes(range(256)) * 3
    send(w, {"type": "result", "case": "lecture"}, blob)
    send(w, {"type": "child_done"})
    reader = FrameReader(r)
    assert reader.read() == ({"type": "result", "case": "lecture"}, blob)
    assert reader.read() == ({"type": "child_done"}, b"")
    os.close(r)
    os.close(w)


def _raw_frame(body: bytes) -> bytes:
    return b"BPN1" + len(body).to_bytes(4, "big") + (0).to_bytes(4, "big") + body


@pytest.mark.parametrize("body, expected", [
    (b'{"m": "plain \\u00e9 text"}', {"m": "plain \u00e9 text"}),              # nothing to clean: kept as parsed
    (b'{"m": "a pair \\ud83d\\ude00"}', {"m": "a pair \U0001f600"}),          # a valid pair stays the character
    (b'{"m\\ud800": ["x \\udcff", {"k": "\\uDFFF"}]}', {"m\\ud800": ["x \\xff", {"k": "\\udfff"}]}),
    (b'{"m": "raw \xed\xa0\x80"}', {"m": "raw \\ud800"}),                   # surrogate bytes, not UTF-8
    ('{"m": "\\ud800"}'.encode("utf-16-le"), {"m": "\\ud800"}),              # JSON in UTF-16, as json reads it
])
def test_the_grading_side_reads_frames_with_valid_strings_only(body, expected):
    r, w = os.pipe()
    os.write(w, _raw_frame(body))
    meta, _ = CleanFrames(r).read()
    assert meta == expected
    json.dumps(meta, ensure_ascii=False).encode("utf-8")  # encodable: no lone surrogate is left anywhere
    os.close(r)
    os.close(w)


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_GETPIPE_SZ"), reason="Linux only")
def test_an_answer_channel_holds_a_whole_case_of_answers(monkeypatch):
    import fcntl

    r, w = channel.pipe()
    try:
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == channel.PIPE_BYTES  # a root grader too: within the user cap
        blob = os.urandom(900_000)  # a case's answers: written at once, no reader needed
        os.set_blocking(w, False)
        send(w, {"type": "result"}, blob)
        assert FrameReader(r).read() == ({"type": "result"}, blob)
    finally:
        os.close(r)
        os.close(w)
    def refuse(fd, cmd, arg=0):
        raise PermissionError("past this user's pipe quota")
    monkeypatch.setattr(channel.fcntl, "fcntl", refuse)
    r, w = channel.pipe()  # the system refuses: still a pipe, of the default size
    send(w, {"type": "result"}, b"x")
    assert FrameReader(r).read() == ({"type": "result"}, b"x")
    os.close(r)
    os.close(w)


def test_output_keeps_head_and_tail_and_counts_the_rest():
    r, w = os.pipe()
    stream = CappedStream(os.fdopen(r, "rb"), 1000)
    os.write(w, b"HEAD" + b"x" * 100_000 + b"TAIL")
    os.close(w)
    stream.join()
    text = stream.text()
    assert text.startswith("HEAD") and text.endswith("TAIL") and len(text) < 1100
    assert stream.dropped == 100_008 - 1000 and "bytes dropped" in text


def test_what_comes_back_is_checked_against_what_it_can_be():
    from grader.sandbox.outcome import clean_finding, clean_result
    from grader.sandbox.inside.session import _quiet_result

    files = {"atomic.py": 5, "helper.py": 2}
    forged = {"pattern": "p", "message": "m", "file": "SECRET.py", "line": 10**100}
    assert clean_finding(forged, "atomic.py", files, hidden=False) == {"pattern": "p", "message": "m", "file": None,
                                                                    "line": None}
    assert clean_finding({**forged, "file": "helper.py", "line": 2}, "atomic.py", files, False)["line"] == 2
    assert clean_finding({**forged, "file": "helper.py", "line": 3}, "atomic.py", files, False)["line"] is None
    assert clean_finding({**forged, "file": ["x"], "line": True}, "atomic.py", files, False)["file"] is None
    assert clean_finding({"pattern": 1}, "atomic.py", files, hidden=False) is None
    flag = clean_finding({**forged, "message": "SECRET"}, "atomic.py", files, hidden=True)
    assert flag["file"] is None and flag["line"] is None and "SECRET" not in json.dumps(flag)
    odd = {"case": "h", "notes": {"C": {"status": ["SECRET"]}, "SECRET": {"status": "SECRET"}},
           "trajectory": {"status": {"SECRET": 1}}, "error": {"message": "SECRET"}, "seconds": 1234.5,
           "lecture": {"SECRET": 1}}
    for reduced in (_quiet_result(odd, {"C"}), clean_result(odd, hidden=True, expected={"C"})):
        text = json.dumps(reduced)
        assert "SECRET" not in text and "1234" not in text, text
        assert reduced["notes"]["C"]["status"] == "wrong_type" and reduced["trajectory"]["status"] == "failed"
