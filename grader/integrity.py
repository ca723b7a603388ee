"""Static scan of a submission for autograd and for the usual ways around a scan.

Autograd computes the grader's answers, so a submission may not use it. This
reads the source with `ast` (nothing is run) and reports each construct with
its file and line. A finding costs the exercise whose file has it, and every
exercise that imports (directly or not) a helper file that has it. The
worker's runtime guard (grader.guard) catches what a scan cannot see.

Rule ids (the keys of RULES) are what grading.yaml's `integrity.allow` lists.
"""

import ast
import re
from dataclasses import dataclass

from grader.exercises import EXERCISES

AUTOGRAD = "PyTorch's automatic differentiation computes the answers, so each gradient must be written out by hand"
DYNAMIC = "code that builds names or code at run time cannot be checked, so write the call out directly"

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
    "backward_kernel": ("PyTorch's built-in backward kernels are the answer key, so each gradient must be "
                        "written out by hand"),
    "torch_internals": "torch's private internals (torch._C and friends) are off limits in this assignment",
    "getattr": DYNAMIC,
    "__import__": DYNAMIC,
    "importlib": DYNAMIC,
    "exec": DYNAMIC,
    "eval": DYNAMIC,
    "compile": DYNAMIC,
    "dynamic_namespace": DYNAMIC,
    "introspection": ("reaching into the interpreter (frames, memory, object internals) is off limits in "
                      "this assignment"),
    "pickle": "loading pickled or marshalled data can run hidden code, so it is off limits in this assignment",
}

# Attribute (and imported) names, and the rule each one breaks.
ATTRIBUTES = {
    "backward": "backward", "grad": "grad", "grad_fn": "autograd", "retain_grad": "autograd",
    "retains_grad": "autograd", "register_hook": "autograd", "_execution_engine": "autograd",
    "requires_grad": "requires_grad", "requires_grad_": "requires_grad", "autograd": "autograd",
    "enable_grad": "enable_grad", "set_grad_enabled": "set_grad_enabled",
    "_set_grad_enabled": "set_grad_enabled", "functorch": "functorch",
    "vjp": "vjp", "jvp": "jvp", "jacrev": "jacrev", "jacfwd": "jacfwd", "hessian": "hessian",
    "jacobian": "jacobian", "hvp": "jacobian", "vhp": "jacobian", "linearize": "jvp",
    "grad_and_value": "torch.func", "forward_ad": "forward_ad", "make_dual": "forward_ad",
    "dual_level": "forward_ad", "unpack_dual": "forward_ad",
    "_C": "torch_internals", "_functorch": "torch_internals", "_autograd": "torch_internals",
    "__dict__": "dynamic_namespace", "__builtins__": "dynamic_namespace",
    "__globals__": "introspection", "__code__": "introspection", "__closure__": "introspection",
    "__subclasses__": "introspection", "__mro__": "introspection", "__bases__": "introspection",
    "__getattribute__": "introspection", "__getattr__": "introspection", "f_globals": "introspection",
    "f_locals": "introspection", "f_back": "introspection", "__loader__": "introspection",
}
# Attributes a student may define for their own classes (a Layer with .backward()):
# then the scan leaves them to the runtime guard, which still catches torch's.
OWNABLE = {"backward", "grad"}
MODULES = {
    "importlib": "importlib", "pkgutil": "importlib", "runpy": "importlib", "code": "exec", "codeop": "exec",
    "builtins": "dynamic_namespace", "functorch": "functorch",
    "ctypes": "introspection", "inspect": "introspection", "gc": "introspection",
    "pickle": "pickle", "marshal": "pickle", "dill": "pickle", "cloudpickle": "pickle", "shelve": "pickle",
}
NAMES = {"__import__": "__import__", "exec": "exec", "eval": "eval", "compile": "compile",
         "globals": "dynamic_namespace", "__builtins__": "dynamic_namespace"}
# Strings that name a forbidden thing, as in vars(torch)["autograd"] (plain words like "grad" or "code" are fine).
STRINGS = {**{k: v for k, v in ATTRIBUTES.items() if k not in OWNABLE}, **NAMES,
           "functorch": "functorch", "importlib": "importlib", "builtins": "dynamic_namespace"}
ATTR_FUNCTIONS = {"getattr": 1, "setattr": 1, "delattr": 1, "hasattr": 1, "attrgetter": 0, "methodcaller": 0}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
MAX_PER_FILE = 20


@dataclass
class Finding:
    exercise: str | None   # the exercise it costs (None: a file no exercise imports)
    file: str
    line: int | None
    rule: str              # a RULES key, as listed in grading.yaml's integrity.allow
    pattern: str           # the construct as written, e.g. `.backward()`
    message: str


class _Scanner(ast.NodeVisitor):
    def __init__(self, owned: set[str]):
        self.owned = owned
        self.hits: list[tuple[int, str, str]] = []  # (line, rule, construct)
        self.torch_names = {"torch"}

    def hit(self, node, rule: str, construct: str) -> None:
        self.hits.append((getattr(node, "lineno", 0), rule, construct))

    def check_attribute(self, node, name: str, construct: str) -> None:
        rule = ATTRIBUTES.get(name)
        if rule is None and "backward" in name and name not in self.owned:
            rule = "backward_kernel"
        if rule is not None and not (name in OWNABLE and name in self.owned):
            self.hit(node, rule, construct)

    def check_module(self, node, module: str) -> None:
        parts = module.split(".")
        for i, part in enumerate(parts):
            if part in MODULES and i == 0:
                self.hit(node, MODULES[part], f"import {module}")
            elif part == "func" and i > 0 and parts[i - 1] == "torch":
                self.hit(node, "torch.func", f"import {module}")
            elif part in ATTRIBUTES and part not in OWNABLE:
                self.hit(node, ATTRIBUTES[part], f"import {module}")

    def visit_Import(self, node):
        for alias in node.names:
            self.check_module(node, alias.name)
            if alias.name == "torch":
                self.torch_names.add(alias.asname or "torch")

    def visit_ImportFrom(self, node):
        module = node.module or ""
        self.check_module(node, module)
        for alias in node.names:
            construct = f"from {module} import {alias.name}"
            if module == "torch" and alias.name == "func":
                self.hit(node, "torch.func", construct)
            elif alias.name in MODULES:
                self.hit(node, MODULES[alias.name], construct)
            else:
                self.check_attribute(node, alias.name, construct)

    def visit_Attribute(self, node):
        if node.attr == "func" and isinstance(node.value, ast.Name) and node.value.id in self.torch_names:
            self.hit(node, "torch.func", f"{node.value.id}.func")
        elif node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys":
            self.hit(node, "dynamic_namespace", "sys.modules")
        else:
            call = "()" if node.attr in ("backward", "requires_grad_", "retain_grad") else ""
            self.check_attribute(node, node.attr, f".{node.attr}{call}")
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in NAMES:
            self.hit(node, NAMES[node.id], node.id)

    def visit_Call(self, node):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in ATTR_FUNCTIONS and len(node.args) > ATTR_FUNCTIONS[name]:
            target = node.args[ATTR_FUNCTIONS[name]]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                for part in target.value.split("."):
                    self.check_attribute(node, part, f"{name}(..., {target.value!r})")
            else:
                self.hit(node, "getattr", f"{name}() with a computed name")
        if name == "vars" and node.args:
            self.hit(node, "dynamic_namespace", "vars(...)")
        for keyword in node.keywords:
            if keyword.arg == "requires_grad" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                self.hit(node, "requires_grad", "requires_grad=True")
        self.generic_visit(node)

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant):
            return  # a docstring or a bare string: inert text
        self.generic_visit(node)

    def visit_Constant(self, node):
        """A string naming a forbidden thing, as in vars(torch)['autograd']."""
        if isinstance(node.value, str) and IDENTIFIER.match(node.value):
            parts = node.value.split(".")
            for i, part in enumerate(parts):
                rule = STRINGS.get(part)
                if part == "func" and i > 0 and parts[i - 1] == "torch":
                    rule = "torch.func"
                if rule is not None:
                    self.hit(node, rule, repr(node.value))
                    return


def _owned_names(tree: ast.AST) -> set[str]:
    """Functions, classes and attributes the submission defines itself (and the contract's functions)."""
    owned = {ex.function for ex in EXERCISES.values()}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            owned.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            owned.add(node.attr)
    return owned


def _parse(source: str):
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # the worker reports why it cannot be imported


def _imports(tree: ast.AST) -> set[str]:
    """Top-level module names a file imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level > 0:  # from . import helper
                names.update(alias.name for alias in node.names)
                if node.module:
                    names.add(node.module.split(".")[0])
    return names


def _importers(trees: dict[str, ast.AST]) -> dict[str, set[str]]:
    """File -> the exercise ids that import it, directly or through other files."""
    modules = {name.removesuffix(".py"): name for name in trees}
    edges = {name: {modules[m] for m in _imports(tree) if m in modules} for name, tree in trees.items()}
    result = {name: set() for name in trees}
    for ex in EXERCISES.values():
        if ex.file not in trees:
            continue
        seen, stack = set(), [ex.file]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(edges.get(current, ()))
        for name in seen:
            result[name].add(ex.id)
    return result


def _message(file: str, line: int | None, construct: str, rule: str, via: str | None) -> str:
    where = f"{file} line {line}" if line else file
    if via:
        where += f" (imported by {via})"
    return f"{where}: {construct} is not allowed: {RULES[rule]}."


def scan(files: dict[str, str], allow: list[str] | tuple[str, ...] = ()) -> list[Finding]:
    """Every finding in a submission (file name -> source), one per exercise it costs."""
    trees = {name: tree for name, source in sorted(files.items())
             if name.endswith(".py") and (tree := _parse(source)) is not None}
    owned = set().union(*(_owned_names(tree) for tree in trees.values()))
    importers = _importers(trees)
    findings = []
    for name, tree in trees.items():
        scanner = _Scanner(owned)
        scanner.visit(tree)
        hits = sorted({h for h in scanner.hits if h[1] not in allow})[:MAX_PER_FILE]
        own = next((ex.id for ex in EXERCISES.values() if ex.file == name), None)
        for line, rule, construct in hits:
            exercises = sorted(importers.get(name, ())) or [None]
            for ex_id in exercises:
                via = None if ex_id is None or ex_id == own else EXERCISES[ex_id].file
                findings.append(Finding(ex_id, name, line or None, rule, construct,
                                        _message(name, line, construct, rule, via)))
    return findings
