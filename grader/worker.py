"""The worker: the only process that runs student code.

Started by the grading process (inside whatever isolation it chose) as
`python -m grader.worker PLAN --channel FD [--go FD]`. It imports torch,
says hello, waits for the go signal (so that its start overlaps with the
grader's own), then for each exercise in the plan imports the student's
module, calls the function on every case and sends the answers back as
frames on the channel. It never writes answers to stdout: whatever the
student prints there is only captured output.
"""

import argparse
import importlib
import json
import os
import sys
import time
import traceback

import torch
from safetensors.torch import load_file, save

from grader import channel, mlp
from grader.exercises import FORWARD_ARGS, PARAMS

DTYPES = {"float64": torch.float64, "float32": torch.float32}


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
        if type(value) is not torch.Tensor:
            kind = "a tensor subclass " if isinstance(value, torch.Tensor) else ""
            self.notes[key] = {"status": "wrong_type",
                               "message": f"got {kind}{type(value).__name__}, expected a plain torch.Tensor"}
            return None
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_complex():
            self.notes[key] = {"status": "wrong_type",
                               "message": f"got a {value.layout} {value.dtype} tensor on {value.device}, "
                                          "expected a dense real tensor on the CPU"}
            return None
        if value.numel() > self.max_numel:
            self.notes[key] = {"status": "wrong_shape",
                               "message": f"wrong shape {tuple(value.shape)}, far larger than expected",
                               "got_shape": list(value.shape)}
            return None
        plain = value.detach().clone().contiguous()
        self.tensors[key] = plain
        self.notes[key] = {"status": "ok"}
        return plain

    def blob(self) -> bytes:
        return save(self.tensors) if self.tensors else b""


def _student_traceback(err: BaseException, submission: str, limit: int = 6) -> str:
    """The last lines of the traceback, keeping only frames in the student's files."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith(submission)]
    lines = [f'  File "{os.path.relpath(f.filename, submission)}", line {f.lineno}, in {f.name}\n'
             f"    {f.line}" for f in frames[-limit:]]
    last = "".join(traceback.format_exception_only(type(err), err)).strip()
    return "\n".join(lines + [last])


def _describe_exit(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"called sys.exit({err.code!r}); a grading function must return its answers"
    if isinstance(err, KeyboardInterrupt):
        return "raised KeyboardInterrupt"
    return f"raised {type(err).__name__}"


class Worker:
    def __init__(self, plan: dict, channel_fd: int):
        self.plan = plan
        self.fd = channel_fd
        self.submission = plan["submission"]
        self.cases = plan["cases"]
        self._inputs: dict[str, dict] = {}

    def send(self, meta: dict, blob: bytes = b"") -> None:
        channel.send(self.fd, meta, blob)

    def inputs(self, case: dict) -> dict:
        if case["name"] not in self._inputs:
            self._inputs[case["name"]] = load_file(os.path.join(self.plan["inputs"], case["file"]))
        return self._inputs[case["name"]]

    def run(self) -> None:
        for exercise in self.plan["exercises"]:
            self.send({"type": "exercise_start", "exercise": exercise["id"]})
            self.run_exercise(exercise)
            self.send({"type": "exercise_end", "exercise": exercise["id"]})
        self.send({"type": "done"})

    def load_function(self, exercise: dict):
        try:
            module = importlib.import_module(exercise["module"])
        except BaseException as err:  # noqa: BLE001 - student code may raise anything, SystemExit too
            kind = "syntax_error" if isinstance(err, SyntaxError) else "import_error"
            self.send({"type": "exercise_error", "exercise": exercise["id"], "status": kind,
                       "message": f"importing {exercise['module']}.py {_describe_exit(err)}",
                       "traceback": _student_traceback(err, self.submission)})
            return None
        function = getattr(module, exercise["function"], None)
        if not callable(function):
            found = "is not a function" if function is not None else "is not defined"
            self.send({"type": "exercise_error", "exercise": exercise["id"], "status": "missing_function",
                       "message": f"{exercise['function']} {found} in {exercise['module']}.py"})
            return None
        return function

    def call(self, function, exercise: dict, case: dict, tensors: dict):
        kwargs = {name: tensors[name].clone() for name in exercise["tensor_args"]}
        kwargs.update({name: case["ints"][name] for name in exercise["int_args"]})
        return function(**kwargs)

    def run_exercise(self, exercise: dict) -> None:
        function = self.load_function(exercise)
        if function is None:
            return
        for case in self.cases:
            started = time.perf_counter()
            answers = Answers(case["max_numel"])
            meta = {"type": "result", "exercise": exercise["id"], "case": case["name"]}
            try:
                result = self.call(function, exercise, case, self.inputs(case))
                if exercise["returns_dict"]:
                    if not isinstance(result, dict):
                        raise TypeError(f"{exercise['function']} returned {type(result).__name__}, "
                                        "expected a dict of gradients")
                    for key in exercise["gradient_checks"]:
                        if key in result:
                            answers.add(key, result[key])
                    meta["extra_keys"] = sorted(str(k) for k in result if k not in exercise["checks"])[:20]
                else:
                    answers.add(exercise["gradient_checks"][0], result)
                if exercise.get("trajectory"):
                    meta["trajectory"] = self.trajectory(function, case, answers)
            except BaseException as err:  # noqa: BLE001
                meta["error"] = {"message": f"{exercise['function']} {_describe_exit(err)}",
                                 "traceback": _student_traceback(err, self.submission)}
            meta["notes"] = answers.notes
            meta["seconds"] = time.perf_counter() - started
            try:
                blob = answers.blob()
            except Exception as err:  # noqa: BLE001 - e.g. a dtype safetensors cannot hold
                meta["notes"] = {k: {"status": "wrong_type", "message": f"could not be sent back ({err})"}
                                 for k in answers.notes}
                blob = b""
            self.send(meta, blob)

    def trajectory(self, function, case: dict, answers: Answers) -> dict:
        """A few SGD steps with the student's gradients; parameters after each step go back."""
        tensors = self.inputs(case)
        params = {k: tensors[k].clone() for k in PARAMS}
        lr = self.plan["train"]["lr"]
        for step in range(self.plan["train"]["steps"]):
            fwd = mlp.forward(params, tensors[f"traj.Xb.{step}"], tensors[f"traj.Yb.{step}"])
            kwargs = {name: fwd[name].clone() for name in FORWARD_ARGS}
            grads = function(**kwargs, n=case["ints"]["n"])
            if not isinstance(grads, dict):
                return {"status": "failed", "message": f"step {step + 1}: did not return a dict"}
            for k in PARAMS:
                g = grads.get(k)
                if g is None:
                    return {"status": "not_implemented", "message": f"d{k} is None (not implemented yet)"}
                if type(g) is not torch.Tensor or g.numel() != params[k].numel():
                    return {"status": "failed",
                            "message": f"step {step + 1}: d{k} is missing or has the wrong size"}
                params[k] = params[k] - lr * g.detach().reshape(params[k].shape).to(params[k].dtype)
            for k in PARAMS:
                answers.add(f"step{step}.{k}", params[k])
        return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="grader.worker")
    parser.add_argument("plan")
    parser.add_argument("--channel", type=int, required=True)
    parser.add_argument("--go", type=int, default=None)
    args = parser.parse_args()
    channel.send(args.channel, {"type": "hello", "pid": os.getpid()})
    if args.go is not None:
        os.read(args.go, 1)  # the grader has written the inputs and the plan
        os.close(args.go)
    with open(args.plan) as fh:
        plan = json.load(fh)
    torch.set_default_dtype(DTYPES[plan["dtype"]])
    torch.set_grad_enabled(False)
    sys.path.insert(0, plan["submission"])
    os.chdir(plan["cwd"])
    Worker(plan, args.channel).run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip atexit hooks a submission may have registered


if __name__ == "__main__":
    main()
