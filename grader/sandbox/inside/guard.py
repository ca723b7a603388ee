"""Locking autograd out of the worker: autograd computes the answers, so it is not allowed.

`install()` runs once in the worker before any student code exists; every
per-exercise child inherits it (fork copies the thread's state). Three layers,
the lowest first:
- the dispatcher: the autograd dispatch keys are excluded in the thread's
  dispatch state, so no operation records a graph whatever grad mode or
  `requires_grad` say, and every aten `*_backward` kernel (tanh_backward,
  _softmax_backward_data, nll_loss_backward, native_batch_norm_backward,
  embedding_dense_backward, ...) is overridden, for each dispatch key it has
  a kernel for, by one that reports the attempt and raises;
- the engine: the autograd engine's Python handles are replaced or removed;
- Python: each entry point that could compute a gradient (torch.autograd,
  torch.func, grad-mode switches, inference_mode(False), requires_grad_)
  reports the attempt through `report` (set by the child) and raises.
Nothing here keeps the originals it replaced (no closures, defaults or
attributes hold them), and the functions that could lift the dispatch
exclusion are deleted from every loaded module, so the student's code
cannot put them back. New threads run with the autograd keys excluded too.
What this cannot stop is code that walks frames or the garbage collector
(or uses ctypes) to find the kernel registrations: the static scan
(grader.submission.integrity) bans those, and it catches the plain uses first.
"""

import _thread
import importlib
import os
import sys
import threading
import warnings

import torch

MESSAGE = ("{construct} is not allowed: PyTorch's automatic differentiation computes the answers, "
           "so every gradient must be written out by hand")

report = None       # callable(finding dict), set by the per-exercise child
submission = ""     # the student's folder, to name the file and line of an attempt
CONSTRUCTS: set[str] = set()  # every construct an attempt can name (the worker checks reports against it)
AUTOGRAD_KEYS = ("AutogradFunctionality", "AutogradOther", "AutogradNestedTensor")
# torch._C functions that could lift the exclusion or reach the engine: deleted wherever they are bound.
UNSAFE = ("_dispatch_tls_set_dispatch_key_excluded", "_dispatch_tls_set_dispatch_key_included",
          "_ForceDispatchKeyGuard", "_SetExcludeDispatchKeyGuard", "_ImperativeEngine", "_EngineBase",
          "_dispatch_library")


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
    blocked.__name__ = construct.rsplit(".", 1)[-1].split(" ")[0]
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
    ("torch.autograd.graph", "_engine_run_backward", "the autograd engine (run_backward)"),
]


def _only_off(construct: str):
    """A grad-mode switch that may be turned off, never on (it holds nothing: grad mode is off already)."""
    CONSTRUCTS.add(construct)

    def switch(mode, *args, **kwargs):
        if mode and not torch.is_grad_enabled():
            attempt(construct)
    return switch


class _InferenceMode:
    """Stands in for torch._C._InferenceMode: inference mode (autograd off) is already on, and stays on."""

    def __init__(self, mode=True):
        if not mode:  # InferenceMode(False) would put the autograd keys back
            attempt("torch.inference_mode(False)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _NoEngine:
    """Stands in for the autograd engine (torch.autograd.Variable._execution_engine)."""

    def run_backward(self, *args, **kwargs):
        attempt("the autograd engine (run_backward)")

    def queue_callback(self, *args, **kwargs):
        attempt("the autograd engine (queue_callback)")

    def is_checkpoint_valid(self):
        return True


def _in_new_threads(start):
    """A new thread starts with the autograd keys included: exclude them before the thread's code runs."""
    below = torch._C._AutoDispatchBelowAutograd  # can only exclude more

    def start_thread(function, *args, **kwargs):
        def run(*a, **k):
            with below():
                return function(*a, **k)
        return start(run, *args, **kwargs)
    return start_thread


def _requires_grad_property():
    """`tensor.requires_grad = True` reports the attempt; reading it works as before."""
    base = torch._C.TensorBase.requires_grad  # torch's own descriptor, not something replaced

    def set_requires_grad(self, value):
        if value:
            attempt("requires_grad=True")
    return property(lambda self: base.__get__(self, type(self)), set_requires_grad)


def _exclude_autograd() -> None:
    for key in AUTOGRAD_KEYS:
        torch._C._dispatch_tls_set_dispatch_key_excluded(getattr(torch._C.DispatchKey, key), True)


def backward_ops() -> list[str]:
    """Every aten operator overload whose name says it is a backward kernel."""
    return sorted(name.removeprefix("aten::") for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("aten::") and "backward" in name)


KERNEL_KEYS = ("CPU", "CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional",
               "CompositeImplicitAutograd")


def _block_kernels():
    """Override every backward kernel, for each dispatch key it has, with one that reports and raises.

    Returns the registration handle: it must stay alive (the caller keeps it in a frame that never returns).
    """
    library = torch._C._dispatch_library("IMPL", "aten", "", "grader/sandbox/inside/guard.py", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel": that is the point
        for name in backward_ops():
            blocked = _blocked(f"torch.ops.aten.{name.split('.')[0]} (a backward kernel)")
            for key in KERNEL_KEYS:
                if torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{name}", key):
                    library.impl(name, key, blocked)
    return library


def _scrub(originals: dict[int, object]) -> None:
    """Replace (or delete) every module-level binding of an original, so no module still hands it out."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            if id(value) in originals:
                replacement = originals[id(value)]
                if replacement is None:
                    del namespace[name]
                else:
                    namespace[name] = replacement


def install():
    """Lock autograd out of this process (and the children it forks). Returns what must be kept alive."""
    import torch.autograd.variable as variable

    torch.set_grad_enabled(False)
    torch._C._set_fwd_grad_enabled(False)
    _exclude_autograd()
    kernels = _block_kernels()
    CONSTRUCTS.update({"torch.enable_grad / set_grad_enabled(True)", "forward-mode AD",
                       "torch.inference_mode(False)", ".requires_grad_()", "requires_grad=True", ".backward()",
                       "the autograd engine (run_backward)", "the autograd engine (queue_callback)"})
    grad_switch = _only_off("torch.enable_grad / set_grad_enabled(True)")
    fwd_switch = _only_off("forward-mode AD")
    originals: dict[int, object] = {
        id(torch._C._set_grad_enabled): grad_switch, id(torch._C._set_fwd_grad_enabled): fwd_switch,
        id(torch._C._InferenceMode): _InferenceMode, id(variable.Variable._execution_engine): _NoEngine(),
        id(torch.Tensor.backward): _blocked(".backward()"),
        **{id(getattr(torch._C, name)): None for name in UNSAFE if hasattr(torch._C, name)},
    }
    keep = [torch._C._set_grad_enabled, torch._C._set_fwd_grad_enabled, torch._C._InferenceMode,
            variable.Variable._execution_engine, torch.Tensor.backward,
            *(getattr(torch._C, name) for name in UNSAFE if hasattr(torch._C, name))]  # ids stay valid while scrubbing
    for module, attr, construct in ENTRY_POINTS:
        _replace(module, attr, construct)
    variable.Variable._execution_engine = originals[id(variable.Variable._execution_engine)]
    torch.Tensor.backward = originals[id(torch.Tensor.backward)]
    torch.Tensor.requires_grad_ = lambda self, requires_grad=True: (
        attempt(".requires_grad_()") if requires_grad else self)
    torch.Tensor.requires_grad = _requires_grad_property()
    for module, name in ((threading, "_start_new_thread"), (threading, "_start_joinable_thread"),
                         (_thread, "start_new_thread"), (_thread, "start_new"), (_thread, "start_joinable_thread")):
        if hasattr(module, name):
            setattr(module, name, _in_new_threads(getattr(module, name)))
    _scrub(originals)
    del keep
    return kernels
