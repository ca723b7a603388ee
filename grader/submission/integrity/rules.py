"""The integrity scan's rules: what each class of finding means, and the finding itself.

A rule id is what grading.yaml's `integrity.allow` lists to allow a whole class of findings; its text
is what the student reads after the construct that broke it.
"""

import re
from dataclasses import dataclass

from grader.submission.integrity.allowlist import BUILTIN_NAMES, INTERPRETER_NAMES, MODULES, TENSOR_EXCLUDED, \
    TENSOR_PRIVATE

AUTOGRAD = "PyTorch's automatic differentiation computes the answers, so each gradient must be written out by hand"
DYNAMIC = "code that builds names or code at run time cannot be checked, so write the call out directly"
KERNELS = "PyTorch's built-in kernels (backward ones included) are the answer key, so each gradient must be written out by hand"

RULES = {
    "backward": AUTOGRAD,
    "grad": AUTOGRAD,
    "requires_grad": AUTOGRAD,
    "autograd": AUTOGRAD,
    "enable_grad": AUTOGRAD,
    "set_grad_enabled": AUTOGRAD,
    "torch.func": AUTOGRAD,
    "functorch": AUTOGRAD,
    "vjp": AUTOGRAD,
    "jvp": AUTOGRAD,
    "jacrev": AUTOGRAD,
    "jacfwd": AUTOGRAD,
    "hessian": AUTOGRAD,
    "jacobian": AUTOGRAD,
    "forward_ad": AUTOGRAD,
    "backward_kernel": KERNELS,
    "torch_internals": "torch's private internals (torch._C and friends) are off limits in this assignment",
    "getattr": DYNAMIC,
    "__import__": DYNAMIC,
    "importlib": DYNAMIC,
    "exec": DYNAMIC,
    "eval": DYNAMIC,
    "compile": DYNAMIC,
    "dynamic_namespace": DYNAMIC,
    "introspection": ("reaching into the interpreter (frames, memory, object internals, dunder attributes) is off "
                      "limits in this assignment"),
    "pickle": "loading pickled or marshalled data can run hidden code, so it is off limits in this assignment",
    # The allow list's own classes of findings.
    "import": ("a backward pass needs only torch, torch.nn.functional, math, numpy, a few pure standard modules "
               "(typing, dataclasses, functools, itertools, collections, ...) and your own files"),
    "builtin": "this built-in is not needed for a backward pass and could reach around the checks",
    "attribute": ("it is not among the tensor methods and forward functions this assignment allows (it could reach "
                  "around the autograd ban); write the computation with tensor operations"),
    "shadowing": ("this file has the name of a Python or installed module, which the real module may replace when "
                  "it is imported: rename the file (e.g. my_helpers.py) and its imports"),
    "module_value": ("use a module only as `module.name(...)`: passing it around or renaming it with `=` hides what "
                     "is called (`import ... as ...` is fine)"),
}

# Autograd's names, and the rule each one breaks (as a module attribute, a tensor attribute or an import).
AUTOGRAD_NAMES = {
    "backward": "backward", "grad": "grad", "grad_fn": "autograd", "retain_grad": "autograd",
    "retains_grad": "autograd", "register_hook": "autograd", "_execution_engine": "autograd",
    "requires_grad": "requires_grad", "requires_grad_": "requires_grad", "autograd": "autograd",
    "enable_grad": "enable_grad", "set_grad_enabled": "set_grad_enabled",
    "_set_grad_enabled": "set_grad_enabled", "functorch": "functorch", "func": "torch.func",
    "vjp": "vjp", "jvp": "jvp", "jacrev": "jacrev", "jacfwd": "jacfwd", "hessian": "hessian",
    "jacobian": "jacobian", "hvp": "jacobian", "vhp": "jacobian", "linearize": "jvp", "vmap": "torch.func",
    "grad_and_value": "torch.func", "forward_ad": "forward_ad", "make_dual": "forward_ad",
    "dual_level": "forward_ad", "unpack_dual": "forward_ad", "ops": "backward_kernel", "library": "backward_kernel",
    "_C": "torch_internals", "_functorch": "torch_internals", "_autograd": "torch_internals",
    "modules": "dynamic_namespace", "__dict__": "dynamic_namespace", "__builtins__": "dynamic_namespace",
}
# Standard modules with a rule of their own when imported.
MODULE_RULES = {
    "importlib": "importlib", "pkgutil": "importlib", "runpy": "importlib", "code": "exec", "codeop": "exec",
    "builtins": "dynamic_namespace", "sys": "dynamic_namespace", "functorch": "functorch",
    "ctypes": "introspection", "inspect": "introspection", "gc": "introspection", "operator": "getattr",
    "pickle": "pickle", "marshal": "pickle", "dill": "pickle", "cloudpickle": "pickle", "shelve": "pickle",
}
BUILTIN_RULES = {"__import__": "__import__", "exec": "exec", "eval": "eval", "compile": "compile",
                 "getattr": "getattr", "setattr": "getattr", "delattr": "getattr", "hasattr": "getattr",
                 "globals": "dynamic_namespace", "locals": "dynamic_namespace", "vars": "dynamic_namespace",
                 "dir": "dynamic_namespace", "__builtins__": "dynamic_namespace", "breakpoint": "introspection"}
# A name the student defines never exempts these (torch's own autograd and internal attributes, the interpreter's).
NEVER_OWNED = TENSOR_EXCLUDED | TENSOR_PRIVATE | set(AUTOGRAD_NAMES) | INTERPRETER_NAMES | {"torch", "sys"}
OWNABLE = {"backward", "grad"}  # a Layer class's .backward()/.grad: left to the runtime guard, which catches torch's
DANGEROUS_STRING = {"requires_grad", "grad_fn", "_C", "autograd", "__globals__", "__builtins__", "__import__"}
CONSTRUCT = re.compile(r"^(import [A-Za-z_][\w.]*|[A-Za-z_][\w.]*|\.[A-Za-z_]\w*)$")


@dataclass
class Finding:
    exercise: str | None   # the exercise it costs (None: a file no exercise imports)
    file: str
    line: int | None
    rule: str              # a RULES key, as listed in grading.yaml's integrity.allow
    pattern: str           # the construct as written, e.g. `.backward()`
    message: str


def _construct_known(entry: str) -> bool:
    if not CONSTRUCT.match(entry):
        return False
    if entry.startswith(("import ", ".")):
        return True
    if "." in entry:  # torch.load, numpy.load: a module's attribute
        return entry.rsplit(".", 1)[0] in MODULES
    return entry in BUILTIN_NAMES  # open, hasattr


def check_allow(entries: list[str]) -> list[str]:
    """grading.yaml's integrity.allow: rule ids or single constructs; anything else is a clear error."""
    bad = [e for e in entries if e not in RULES and not _construct_known(e)]
    if bad:
        raise ValueError(f"unknown integrity rule {', '.join(bad)}: list a rule id ({', '.join(RULES)}) or one "
                         "construct as a finding names it, e.g. 'import scipy', 'torch.load', 'open' or '.foo'")
    return entries


def rule_for(name: str, default: str) -> str:
    """The rule a name breaks when it is not allowed (`default` for an ordinary unknown name)."""
    if name in AUTOGRAD_NAMES:
        return AUTOGRAD_NAMES[name]
    if name in INTERPRETER_NAMES:
        return "introspection"
    if "backward" in name:
        return "backward_kernel"
    if name.startswith("__") and name.endswith("__"):
        return "introspection"
    if name.startswith("_"):
        return "torch_internals"
    return default


def message(file: str, line: int | None, construct: str, rule: str, via: str | None) -> str:
    where = f"{file} line {line}" if line else file
    if via:
        where += f" (imported by {via})"
    return f"{where}: {construct} is not allowed: {RULES[rule]}."
