"""Inside an exercise child process (one exercise, or a group's in turn): import the student's module, call
it on each case.

This is the only code that runs next to student code. It sends what the
function returned as frames on the child's own pipe (the worker relays them);
the answers are plain tensors, checked for type and size before they are
copied, and whatever happens is described for a learner.
"""

import errno
import importlib
import os
import signal
import sys
import time
import traceback

import torch
from safetensors.torch import load, load_file, save

try:
    from safetensors import TensorSpec, serialize  # 0.8 on: a tensor described where it lies
except ImportError:  # an older safetensors: safetensors.torch.save, slower
    TensorSpec = serialize = None

from grader.course import mlp
from grader.course.mlp import FORWARD_ARGS, PARAMS
from grader.sandbox.inside import channel, confine

PLAIN_TENSOR = torch.Tensor  # taken before any student code could rebind torch.Tensor
# Taken before student code runs (which may rebind them); the Zygote does not rely on them anyway.
_closerange, _dup2, _open, _close, _read = os.closerange, os.dup2, os.open, os.close, os.read
_exit, _kill, _getpid = os._exit, os.kill, os.getpid

# Case inputs by file name, read once by the worker (or the fork server) before it forks the exercise
# children, which inherit them. Hidden ones arrive (as safetensors bytes) only after every public case has run.
PRELOADED: dict[str, dict[str, torch.Tensor]] = {}
_STAMPS: dict[str, tuple] = {}  # file -> what it was read from, so a rewritten file is read again
# (file, name) of every tensor that came down a pipe (add_inputs): hidden inputs and autograd's answers.
# Never in a file the sandbox can read, so only these need wiping from a child's memory (restrict).
PIPED: set[tuple[str, str]] = set()


def preload(file: str, path: str) -> None:
    """A public input file's tensors, read once (again only if the file changed). Bytes that came down a pipe
    go through add_inputs instead, which marks them for wiping."""
    info = os.stat(path)
    stamp = (path, info.st_ino, info.st_size, info.st_mtime_ns)
    if file not in PRELOADED or _STAMPS.get(file) != stamp:
        PRELOADED[file] = load_file(path)
        _STAMPS[file] = stamp


def trajectory_check(exercise: dict) -> dict | None:
    """The plan's trajectory check of an exercise ({"kind": "trajectory", "params", "steps", "lr"}), if it has one."""
    return next((c for c in exercise.get("checks", ()) if isinstance(c, dict) and c.get("kind") == "trajectory"), None)


def visible(exercise: dict):
    """Which case tensors an exercise's child may hold: its own arguments, never another's.

    A case also carries other exercises' inputs, some of them autograd's answers of this one (batch norm's
    `dhpreact` is the gradient of exercise 1's hpreact): this child must not have them to copy.
    """
    trajectory = trajectory_check(exercise)
    if exercise.get("mode") == "lecture":
        names = {*FORWARD_ARGS, *exercise.get("provided", [])}
    elif exercise.get("mode") == "lecture_train":  # exercise 4's loop: the parameters and its batches
        names = {*PARAMS, "Xb", "Yb"}
    else:
        names = set(exercise["tensor_args"]) | set(trajectory["params"] if trajectory else ())
    return lambda name: name in names or (trajectory is not None and name.startswith("traj."))


def restrict(exercises: dict | list[dict]) -> None:
    """In an exercise's child, before any student code: drop every preloaded tensor that is not its own.

    Those that came down a pipe are wiped too (this child's copy only: fork), so that freed memory keeps no
    value to read back. The rest were read from the public input files, which every child can read anyway:
    wiping them would only copy their pages (0.4 to 0.8 ms per child, for nothing). A child that runs a group
    of exercises (grader.sandbox.sharing) keeps its members' file inputs and drops every piped one but its
    first member's (which runs before any other): the Zygote sends the others again when their exercise's
    turn comes, after every member before it has answered.
    """
    group = exercises if isinstance(exercises, list) else [exercises]
    keeps = [visible(exercise) for exercise in group]
    for file, tensors in list(PRELOADED.items()):
        PRELOADED[file] = kept = {name: tensor for name, tensor in tensors.items() if any(keep(name) for keep in keeps)
                                  and ((file, name) not in PIPED or keeps[0](name))}
        for name, tensor in tensors.items():
            if name not in kept and (file, name) in PIPED:
                tensor.zero_()


def add_inputs(file: str, blob: bytes) -> None:
    """Tensors that came down the go pipe (hidden cases, or a public case's private part), added to `file`'s."""
    tensors = load(blob)
    PIPED.update((file, name) for name in tensors)
    PRELOADED[file] = {**PRELOADED.get(file, {}), **tensors}


class Answers:
    """Turns what a student function returned into plain tensors plus per-key notes."""

    def __init__(self, max_numel: int):
        self.max_numel = max_numel
        self.tensors: dict[str, torch.Tensor] = {}
        self.notes: dict[str, dict] = {}

    def add(self, key: str, value) -> torch.Tensor | None:
        if value is None:
            self.notes[key] = {"status": "not_implemented", "message": "not implemented yet (None)"}
            return None
        if type(value) is not PLAIN_TENSOR:
            kind = "a tensor subclass " if isinstance(value, PLAIN_TENSOR) else ""
            self.notes[key] = {"status": "wrong_type",
                               "message": f"got {kind}{type(value).__name__}, expected a plain torch.Tensor"}
            return None
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_complex():
            self.notes[key] = {"status": "wrong_type",
                               "message": f"got a {value.layout} {value.dtype} tensor on {value.device}, "
                                          "expected a dense real tensor on the CPU"}
            return None
        if value.numel() > self.max_numel:  # e.g. a broadcast view: never copy it
            self.notes[key] = {"status": "wrong_shape",
                               "message": f"wrong shape {tuple(value.shape)}, far larger than expected",
                               "got_shape": list(value.shape)[:8]}
            return None
        plain = value.detach().clone().contiguous()
        self.tensors[key] = plain
        self.notes[key] = {"status": "ok"}
        return plain

    def blob(self) -> bytes:
        """The answers as safetensors (a correct exercise sends up to 26 tensors a case)."""
        return tensor_bytes(self.tensors) if self.tensors else b""


def tensor_bytes(tensors: dict) -> bytes:
    """CPU tensors as the safetensors bytes safetensors.torch.save writes of their dense copies, each described
    where it lies (TensorSpec, safetensors >= 0.8): a tenth of safetensors.torch's time, paid on every case."""
    # Each tensor's memory is read as it lies: a view made dense, a lazily negated or conjugated one resolved.
    tensors = {key: t.resolve_conj().resolve_neg().contiguous() for key, t in tensors.items()}
    if TensorSpec is not None and all(type(t) is PLAIN_TENSOR and t.layout is torch.strided and t.is_cpu
                                      for t in tensors.values()):
        try:
            return serialize({key: TensorSpec(dtype=_DTYPE_NAMES[t.dtype], shape=t.shape, data_ptr=t.data_ptr(),
                                              data_len=t.numel() * t.element_size())
                              for key, t in tensors.items()})
        except Exception:  # noqa: BLE001 - another safetensors' TensorSpec, or a dtype it lacks: its own path
            pass
    return save(tensors)


_DTYPE_NAMES = {d: str(d).split(".")[-1] for d in vars(torch).values() if isinstance(d, torch.dtype)}  # "float64"


def out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text or "DefaultCPUAllocator" in text))


def student_traceback(err: BaseException, submission: str, limit: int = 6) -> str:
    """The last lines of the traceback, keeping only frames in the student's files."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith(submission)]
    lines = [f'  File "{os.path.relpath(f.filename, submission)}", line {f.lineno}, in {f.name}\n'
             f"    {f.line}" for f in frames[-limit:]]
    last = "".join(traceback.format_exception_only(type(err), err)).strip()[:2000]
    return "\n".join(lines + [last])


class Harness:
    def __init__(self, plan: dict, fd: int):
        self.plan = plan
        self.fd = fd
        self.submission = plan["submission"]
        self.memory_mb = plan["memory_mb"]
        self._inputs: dict[str, dict] = {}
        self.cases: list[dict] = []
        self.exercise: dict | None = None  # the exercise this child runs: its inputs only

    def send(self, meta: dict, blob: bytes = b"") -> None:
        channel.send(self.fd, meta, blob)

    def send_answers(self, meta: dict, answers: "Answers") -> None:
        """One case's result frame: its notes, and its answers as safetensors (or a note on each if they cannot be)."""
        meta["notes"] = answers.notes
        try:
            blob = answers.blob()
        except Exception as err:  # noqa: BLE001 - e.g. a dtype safetensors cannot hold
            meta["notes"] = {k: {"status": "wrong_type", "message": f"could not be sent back ({err})"[:300]}
                             for k in answers.notes}
            blob = b""
        self.send(meta, blob)

    def describe(self, err: BaseException) -> str:
        if isinstance(err, SystemExit):
            return f"called sys.exit({err.code!r}); a grading function must return its answers"
        if isinstance(err, KeyboardInterrupt):
            return "raised KeyboardInterrupt"
        if out_of_memory(err):
            return f"ran out of memory (limit {self.memory_mb} MB): look for a tensor far larger than the inputs"
        if isinstance(err, RecursionError):
            return "recursed too deeply (RecursionError): look for a function that calls itself without end"
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return (f"wrote more than the grader allows ({err.strerror}; files may take "
                    f"{self.plan['file_size_mb']} MB in all)")
        if isinstance(err, OSError) and err.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
            return (f"tried something the grader does not allow ({type(err).__name__}: {err.strerror}): "
                    "starting processes, "
                    "signalling other processes, network access, or writing outside the working directory")
        return f"raised {type(err).__name__}"

    def inputs(self, case: dict) -> dict:
        if case["name"] not in self._inputs:
            tensors = PRELOADED.get(case["file"])
            if tensors is None:
                tensors = load_file(os.path.join(self.plan["inputs"], case["file"]))
            keep = visible(self.exercise) if self.exercise is not None else (lambda name: True)
            self._inputs[case["name"]] = {name: t for name, t in tensors.items() if keep(name)}
        return self._inputs[case["name"]]

    def load_function(self, exercise: dict):
        try:
            module = importlib.import_module(exercise["module"])
        except BaseException as err:  # noqa: BLE001 - student code may raise anything, SystemExit too
            kind = "syntax_error" if isinstance(err, SyntaxError) else "import_error"
            self.send({"type": "exercise_error", "status": kind,
                       "message": f"importing {exercise['module']}.py {self.describe(err)}",
                       "traceback": student_traceback(err, self.submission)})
            return None
        function = getattr(module, exercise["function"], None)
        if not callable(function):
            found = "is not a function" if function is not None else "is not defined"
            self.send({"type": "exercise_error", "status": "missing_function",
                       "message": f"{exercise['function']} {found} in {exercise['module']}.py"})
            return None
        return function

    def call(self, function, exercise: dict, case: dict, tensors: dict):
        kwargs = {name: tensors[name].clone() for name in exercise["tensor_args"]}
        kwargs.update({name: case["ints"][name] for name in exercise["int_args"]})
        return function(**kwargs)

    def run_exercise(self, exercise: dict, cases: list[dict]) -> None:
        self.exercise = exercise
        if exercise.get("mode") == "lecture":  # cells of the lecture's notebook, not a module: grader.sandbox.inside.lecture_cells
            from grader.sandbox.inside.lecture_cells import run_lecture_exercise

            return run_lecture_exercise(self, exercise, cases, Answers)
        if exercise.get("mode") == "lecture_train":  # exercise 4's loop in the lecture's notebook: grader.sandbox.inside.train_loop
            from grader.sandbox.inside.train_loop import run_train_loop

            return run_train_loop(self, exercise, cases, Answers)
        function = self.load_function(exercise)
        if function is None:
            return
        for case in cases:
            started = time.perf_counter()
            answers = Answers(case["max_numel"])
            meta = {"type": "result", "case": case["name"]}
            try:
                result = self.call(function, exercise, case, self.inputs(case))
                if exercise["returns_dict"]:
                    if not isinstance(result, dict):
                        raise TypeError(f"{exercise['function']} returned {type(result).__name__}, "
                                        "expected a dict of gradients")
                    for key in exercise["gradient_checks"]:
                        if key in result:
                            answers.add(key, result[key])
                        elif f"d{key}" in result:  # a common slip: the keys carry no `d`
                            answers.notes[key] = {"status": "missing", "message": (
                                f"missing: the dict has 'd{key}', but its keys are the tensor names "
                                f"without the d: use '{key}'")}
                else:
                    answers.add(exercise["gradient_checks"][0], result)
                if (check := trajectory_check(exercise)) is not None:
                    meta["trajectory"] = self.trajectory(function, case, answers, check)
            except BaseException as err:  # noqa: BLE001
                meta["error"] = {"message": f"{exercise['function']} {self.describe(err)}",
                                 "traceback": student_traceback(err, self.submission)}
            meta["seconds"] = time.perf_counter() - started
            self.send_answers(meta, answers)

    def trajectory(self, function, case: dict, answers: Answers, check: dict) -> dict:
        """A few SGD steps on the lecture's model with the student's gradients; parameters after each step go back."""
        tensors = self.inputs(case)
        names = tuple(check["params"])
        params = {k: tensors[k].clone() for k in names}
        lr = check["lr"]
        for step in range(int(check["steps"])):
            fwd = mlp.forward(params, tensors[f"traj.Xb.{step}"], tensors[f"traj.Yb.{step}"])
            kwargs = {name: fwd[name].clone() for name in FORWARD_ARGS}
            grads = function(**kwargs, n=case["ints"]["n"])
            if not isinstance(grads, dict):
                return {"status": "failed", "message": f"step {step + 1}: did not return a dict"}
            for k in names:
                g = grads.get(k)
                if g is None:
                    return {"status": "not_implemented", "message": f"d{k} is None (not implemented yet)"}
                if type(g) is not PLAIN_TENSOR or g.numel() != params[k].numel():
                    return {"status": "failed",
                            "message": f"step {step + 1}: d{k} is missing or has the wrong size"}
                params[k] = params[k] - lr * g.detach().reshape(params[k].shape).to(params[k].dtype)
            for k in names:
                answers.add(f"step{step}.{k}", params[k])
        return {"status": "ok"}


def pause(fd: int, hidden_fd: int, end: dict | None = None) -> bool:
    """In the child, public cases done: give up everything that can print, wait to be sealed, then for the
    hidden inputs. True once they are added to harness.PRELOADED (their `end` frame copied into `end`, which
    names the exercise they are for); False if the Zygote sent none."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # what the public cases printed still reaches the captured output
        except BaseException:  # noqa: BLE001
            pass
    low, high = sorted((fd, hidden_fd))
    _closerange(3, low)
    _closerange(low + 1, high)
    _closerange(high + 1, 1 << 20)
    devnull = _open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        _dup2(devnull, target)
    if devnull > 2:
        _close(devnull)
    channel.send(fd, {"type": "ready_hidden"})
    if _read(hidden_fd, 1) != confine.SEAL:
        return False
    confine.set_dumpable(False)
    channel.send(fd, {"type": "sealed"})
    return next_inputs(hidden_fd, end)


def next_inputs(fd: int, end: dict | None = None) -> bool:
    """Block for the next `inputs` frames up to an `end` frame on `fd` and add them to PRELOADED (the end frame
    copied into `end`); False if the pipe closes first."""
    received = channel.read_inputs(channel.FrameReader(fd, max_meta=4096, max_total=1 << 30), end=end)
    for file, data in received or ():
        add_inputs(file, data)
    return received is not None


def child_main(plan: dict, exercises: list[dict], cases: list[dict], fd: int, quiet: bool, inherited, parent: int,
               keep=(), hidden_fd: int | None = None) -> None:
    """In the forked child: confine, then run the student's functions, one exercise after another (a group's
    next one when the Zygote says, on `hidden_fd`); then, with `keep`, pause for the hidden cases
    (grader.sandbox.inside.confine.Paused) and run them for each exercise the Zygote names. Never returns."""
    code = 0
    try:
        for inherited_fd in inherited:  # only the child's own pipe stays reachable
            if inherited_fd is not None:
                os.close(inherited_fd)
        if quiet:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
        confine.die_with_parent(parent)
        confine.set_dumpable(True)  # its own /proc entries; the worker above stays undumpable
        confine.install_filter()
        from grader.sandbox.inside import guard

        restrict(exercises)  # only these exercises' own inputs stay in this process
        guard.submission = plan["submission"]
        guard.report = lambda finding: channel.send(fd, {"type": "integrity", **finding})
        sys.path.insert(0, plan["submission"])
        by_id = {exercise["id"]: exercise for exercise in exercises}
        for i, exercise in enumerate(exercises):
            end: dict = {}
            if i and not (next_inputs(hidden_fd, end) and end.get("exercise") == exercise["id"]):
                return
            Harness(plan, fd).run_exercise(exercise, cases)
            channel.send(fd, {"type": "child_done"})
        end = {}
        if keep and hidden_fd is not None and pause(fd, hidden_fd, end):
            while (exercise := by_id.get(end.get("exercise", exercises[0]["id"]))) is not None:
                Harness(plan, fd).run_exercise(exercise, keep)
                channel.send(fd, {"type": "child_done"})
                end = {}
                if not next_inputs(hidden_fd, end):
                    break
    except BaseException:  # noqa: BLE001 - a broken pipe, or the grader's own bug: say so, then go
        code = 70
        try:
            import traceback

            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        _exit(code)  # skip atexit hooks a submission may have registered
        _kill(_getpid(), signal.SIGKILL)  # never fall back into the worker's own code
