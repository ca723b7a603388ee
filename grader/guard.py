"""Locking autograd out of the worker: autograd computes the answers, so it is not allowed.

`install()` runs once in the worker before any student code exists; every
per-exercise child inherits it. Grad mode is switched off (and stays off in
new threads, where torch would switch it back on), forward-mode AD is off,
and each entry point that could compute a gradient is replaced by a function
that reports the attempt through `report` (set by the child) and raises.
The static scan (grader.integrity) catches the plain uses; this catches the
dynamic ones.
"""

import _thread
import importlib
import os
import sys
import threading

import torch

MESSAGE = ("{construct} is not allowed: PyTorch's automatic differentiation computes the answers, "
           "so every gradient must be written out by hand")

report = None       # callable(finding dict), set by the per-exercise child
submission = ""     # the student's folder, to name the file and line of an attempt
CONSTRUCTS: set[str] = set()  # every construct an attempt can name (the worker checks reports against it)


def message(construct: str) -> str:
    return MESSAGE.format(construct=construct)


class AutogradNotAllowed(RuntimeError):
    pass


def _where() -> tuple[str | None, int | None]:
    """The innermost frame that belongs to the submission."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if submission and name.startswith(submission + os.sep):
            return os.path.relpath(name, submission), frame.f_lineno
        frame = frame.f_back
    return None, None


def attempt(construct: str):
    file, line = _where()
    text = message(construct)
    if report is not None:
        report({"pattern": construct, "file": file, "line": line, "message": text})
    raise AutogradNotAllowed(text)


def _blocked(construct: str):
    CONSTRUCTS.add(construct)

    def blocked(*args, **kwargs):
        attempt(construct)
    blocked.__name__ = construct.rsplit(".", 1)[-1]
    return blocked


def _replace(module_name: str, attr: str, construct: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:  # e.g. torch._C._functorch, an attribute rather than a module file
        module = sys.modules.get(module_name)
    if module is not None and hasattr(module, attr):  # parts differ between torch versions
        setattr(module, attr, _blocked(construct))


ENTRY_POINTS = [
    ("torch.autograd", "backward", "torch.autograd.backward"),
    ("torch.autograd", "grad", "torch.autograd.grad"),
    *[("torch.autograd.functional", f, f"torch.autograd.functional.{f}")
      for f in ("vjp", "jvp", "jacobian", "hessian", "hvp", "vhp")],
    *[("torch.autograd.forward_ad", f, f"torch.autograd.forward_ad.{f}")
      for f in ("make_dual", "enter_dual_level")],  # not unpack_dual: printing a tensor calls it
    *[("torch.func", f, f"torch.func.{f}")
      for f in ("grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "linearize")],
    *[("torch._functorch.eager_transforms", f, f"torch.func.{f}")
      for f in ("grad", "grad_and_value", "grad_impl", "grad_and_value_impl", "vjp", "jvp",
                "jacrev", "jacfwd", "hessian", "linearize")],
    # The roots that every transform above goes through.
    ("torch._C._functorch", "_grad_increment_nesting", "torch.func (grad transform)"),
    ("torch._C._functorch", "_jvp_increment_nesting", "torch.func (jvp transform)"),
    ("torch._functorch.eager_transforms", "_grad_increment_nesting", "torch.func (grad transform)"),
    ("torch._functorch.eager_transforms", "_jvp_increment_nesting", "torch.func (jvp transform)"),
    ("torch._C", "_enter_dual_level", "forward-mode AD (dual_level)"),
    ("torch._functorch.predispatch", "_enter_dual_level", "forward-mode AD (dual_level)"),
    ("torch._functorch.predispatch", "_enter_dual_level_impl", "forward-mode AD (dual_level)"),
]


def _only_off(original, construct: str):
    """A switch that may be turned off, never on."""
    CONSTRUCTS.add(construct)

    def switch(mode, *args, **kwargs):
        if mode:
            attempt(construct)
        return original(mode, *args, **kwargs)
    return switch


def _grad_off_in_new_threads(start):
    """torch's grad mode is per thread and on by default: turn it off before the thread's code."""
    set_grad = torch._C._set_grad_enabled

    def start_thread(function, *args, **kwargs):
        def run(*a, **k):
            set_grad(False)
            return function(*a, **k)
        return start(run, *args, **kwargs)
    return start_thread


def _requires_grad_property():
    """`tensor.requires_grad = True` reports the attempt; reading it works as before."""
    base = torch._C.TensorBase.requires_grad

    def set_requires_grad(self, value):
        if value:
            attempt("requires_grad=True")
        base.__set__(self, value)
    return property(lambda self: base.__get__(self, type(self)), set_requires_grad)


def install() -> None:
    torch.set_grad_enabled(False)
    torch._C._set_fwd_grad_enabled(False)
    torch._C._set_grad_enabled = _only_off(torch._C._set_grad_enabled, "torch.enable_grad / set_grad_enabled(True)")
    torch._C._set_fwd_grad_enabled = _only_off(torch._C._set_fwd_grad_enabled, "forward-mode AD")
    # inference_mode(False) switches grad mode back on in C++.
    CONSTRUCTS.update({"torch.inference_mode(False)", ".requires_grad_()", "requires_grad=True"})
    inference = torch._C._InferenceMode
    torch._C._InferenceMode = lambda mode: inference(mode) if mode else attempt("torch.inference_mode(False)")
    for module, attr, construct in ENTRY_POINTS:
        _replace(module, attr, construct)
    torch.Tensor.backward = _blocked(".backward()")
    requires_grad_ = torch.Tensor.requires_grad_
    torch.Tensor.requires_grad_ = lambda self, requires_grad=True: (
        attempt(".requires_grad_()") if requires_grad else requires_grad_(self, False))
    torch.Tensor.requires_grad = _requires_grad_property()
    for module, name in ((threading, "_start_new_thread"), (threading, "_start_joinable_thread"),
                         (_thread, "start_new_thread"), (_thread, "start_new"), (_thread, "start_joinable_thread")):
        if hasattr(module, name):
            setattr(module, name, _grad_off_in_new_threads(getattr(module, name)))
