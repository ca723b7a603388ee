"""The integrity scan of one file: every import, name and attribute against the allow list.

`Scanner` checks each node once, innermost first; `Defined` is what the file defines itself (its names
may be used as attributes, never to stand for one of torch's). See grader.submission.integrity.
"""

import ast
import functools
import importlib.util
import re
import sys

from grader.course.registry import EXERCISES
from grader.submission.integrity.allowlist import (ALLOWED_BUILTINS, BUILTIN_NAMES, DEFAULT_ALIASES, GENERAL,
                                                   MODULES, SAFE_DUNDER_ATTRS, SAFE_DUNDER_DEFS, TORCH_CLASSES)
from grader.submission.integrity.rules import (BUILTIN_RULES, DANGEROUS_STRING, MODULE_RULES, NEVER_OWNED, OWNABLE,
                                               rule_for)

@functools.cache
def _installed(top: str) -> bool:
    """Whether a top-level module exists here (looked up, never imported; the sandbox sees no more than this)."""
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return True


def shadows(module: str) -> bool:
    """A file named like a Python or installed module (os.py, ctypes.py, torch.py, grader.py): in the sandbox the
    real module, already imported, may be the one that loads, so the file's own names never stand for it."""
    contract = {ex.module for ex in EXERCISES.values()}  # the registry can grow (a course's own definitions)
    return module not in contract and (module in sys.stdlib_module_names or module in MODULES or _installed(module))



def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


class Defined:
    """What a file defines: every bound name, top-level names (its module attributes), class attributes."""

    def __init__(self, tree: ast.Module, nodes: list):
        self.bound: set[str] = set()       # names bound other than by an import
        self.attributes: set[str] = set()  # attribute stores, methods and class-body names
        self.top: set[str] = set().union(*(_targets(node) for node in tree.body))  # for `helper.name`
        for node in nodes:
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                self.bound.add(node.id)
            elif isinstance(node, ast.arg):
                self.bound.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.bound.add(node.name)
                self.attributes.add(node.name)
            elif isinstance(node, ast.ClassDef):
                self.bound.add(node.name)
                for item in node.body:
                    self.attributes.update(_targets(item))
            elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
                self.attributes.add(node.attr)
            elif isinstance(node, ast.Call) and len(node.args) >= 2 and "namedtuple" in (
                    getattr(node.func, "id", None), getattr(node.func, "attr", None)):
                self.attributes.update(_field_names(node.args[1]))  # namedtuple('P', 'a b'): p.a, p.b


def _field_names(node) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return set(node.value.replace(",", " ").split())
    if isinstance(node, (ast.List, ast.Tuple)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def _targets(node) -> set[str]:
    """Names a top-level statement binds (not imports of modules: `helper.torch` is not the helper's own)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        known = MODULES.get(node.module, ())
        return {a.asname or a.name for a in node.names if a.name in known and f"{node.module}.{a.name}" not in MODULES}
    return set()


class Scanner:
    """Checks each node once, innermost first (so a chain like torch.ops.aten.x is reported at its first step)."""

    def __init__(self, own: dict[str, set[str]], owned: set[str], defined: Defined, allow: set[str]):
        self.own = own              # the submission's modules -> their own names
        self.owned = owned          # attribute names the submission defines (that may be exempted)
        self.defined = defined
        self.allow = allow
        self.hits: list[tuple[int, str, str]] = []  # (line, rule, construct)
        self.aliases: dict[str, str] = {}           # local name -> module path, 'own:helper' or 'open:scipy'
        self.receivers: set[int] = set()             # ids of nodes used as `node.attr`
        self.flagged: set[int] = set()

    # -- set-up ---------------------------------------------------------------------------------
    def run(self, nodes: list) -> None:
        imported: dict[str, set[str]] = {}
        for node in nodes:
            if isinstance(node, ast.Attribute):
                self.receivers.add(id(node.value))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for name, path in self._import_aliases(node):
                    imported.setdefault(name, set()).add(path)
        for name, path in DEFAULT_ALIASES.items():
            if name not in imported and name not in self.defined.bound:
                self.aliases[name] = path
        for name, paths in imported.items():
            if len(paths) == 1 and name not in self.defined.bound:  # one meaning only, or it is a plain name
                self.aliases[name] = paths.pop()
        # A docstring or a bare string is inert text.
        inert = {id(n.value) for n in nodes if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        methods = {}
        for node in reversed(nodes):  # breadth-first reversed: every node after its children
            kind = type(node)
            if kind not in methods:
                methods[kind] = getattr(self, f"visit_{kind.__name__}", None)
            if methods[kind] is not None and id(node) not in inert:
                methods[kind](node)

    def _import_aliases(self, node):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name if alias.asname else alias.name.split(".")[0]
                yield alias.asname or target, self._module_kind(target)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            for alias in node.names:
                if node.level or base in self.own:
                    if alias.name in self.own:  # from . import helper
                        yield alias.asname or alias.name, f"own:{alias.name}"
                elif f"{base}.{alias.name}" in MODULES:
                    yield alias.asname or alias.name, f"{base}.{alias.name}"

    def _module_kind(self, path: str) -> str:
        if path in self.own:
            return f"own:{path}"
        if path in MODULES:
            return path
        return f"open:{path}"  # allowed by the course (else the import itself is a finding)

    def hit(self, node, rule: str, construct: str) -> None:
        self.flagged.add(id(node))
        if rule not in self.allow and construct not in self.allow and construct.rstrip("()") not in self.allow:
            self.hits.append((getattr(node, "lineno", 0), rule, construct))

    # -- imports ---------------------------------------------------------------------------------
    def module_allowed(self, node, path: str) -> bool:
        top = path.split(".")[0]
        if path in MODULES or top in self.own or f"import {path}" in self.allow or f"import {top}" in self.allow:
            return True
        if not _installed(top):
            return True  # it cannot be imported in the sandbox either: the worker reports ModuleNotFoundError
        parts = path.split(".")
        rule = MODULE_RULES.get(top, "import")
        for part in parts[1:]:
            rule = rule_for(part, rule) if rule == "import" else rule
        self.hit(node, rule, f"import {path}")
        return False

    def visit_Import(self, node):
        for alias in node.names:
            self.module_allowed(node, alias.name)
            if alias.asname:
                self.check_identifier(node, alias.asname)

    def visit_ImportFrom(self, node):
        module = node.module or ""
        if node.level:  # from . import helper / from .helper import f: the submission's own files
            if module and module.split(".")[0] not in self.own:
                self.hit(node, "import", f"from .{module} import ...")
            for alias in node.names:
                if not module and alias.name not in self.own:
                    self.hit(node, "import", f"from . import {alias.name}")
                self.check_identifier(node, alias.asname or alias.name)
            return
        if not self.module_allowed(node, module):
            return
        known = MODULES.get(module)
        for alias in node.names:
            construct = f"from {module} import {alias.name}"
            if alias.name == "*" and module.split(".")[0] not in self.own:
                self.hit(node, "import", construct)
            elif known is not None and alias.name not in known and f"{module}.{alias.name}" not in MODULES:
                self.hit(node, rule_for(alias.name, "attribute"), construct)
            self.check_identifier(node, alias.asname or alias.name)

    # -- names -----------------------------------------------------------------------------------
    def check_identifier(self, node, name: str) -> None:
        if name in BUILTIN_NAMES and name not in ALLOWED_BUILTINS:
            self.hit(node, BUILTIN_RULES.get(name, "builtin"), name)
        elif _dunder(name) and name not in ALLOWED_BUILTINS:
            self.hit(node, BUILTIN_RULES.get(name, "introspection"), name)

    def visit_Name(self, node):
        self.check_identifier(node, node.id)
        path = self.aliases.get(node.id)
        if path is not None and id(node) not in self.receivers and isinstance(node.ctx, ast.Load):
            self.hit(node, "module_value", f"{node.id} (a module) as a value")

    def visit_arg(self, node):
        self.check_identifier(node, node.arg)

    def visit_FunctionDef(self, node):
        if _dunder(node.name):
            if node.name not in SAFE_DUNDER_DEFS:
                self.hit(node, "introspection", f"def {node.name}")
        else:
            self.check_identifier(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.check_identifier(node, node.name)

    def visit_Global(self, node):
        for name in node.names:
            self.check_identifier(node, name)

    visit_Nonlocal = visit_Global

    def visit_ExceptHandler(self, node):
        if node.name:
            self.check_identifier(node, node.name)

    # -- attributes ------------------------------------------------------------------------------
    def resolve(self, node) -> str | None:
        """The module (or torch class) an expression statically is, if any."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            if base is not None and f"{base}.{node.attr}" in MODULES | TORCH_CLASSES:
                return f"{base}.{node.attr}"
        return None

    def attribute_allowed(self, receiver: str | None, name: str, load: bool = True) -> bool:
        if _dunder(name):
            return name in SAFE_DUNDER_ATTRS and (load or name == "__init__")
        if receiver in MODULES:
            return name in MODULES[receiver] or f"{receiver}.{name}" in MODULES
        if receiver in TORCH_CLASSES:
            return name in TORCH_CLASSES[receiver]
        if receiver is not None and receiver.startswith("own:"):
            return name in self.own.get(receiver[4:], set())
        if receiver is not None and receiver.startswith("open:"):
            return not name.startswith("_")
        return name in GENERAL or (name in self.owned and (name not in NEVER_OWNED or name in OWNABLE))

    def visit_Attribute(self, node):
        if id(node.value) in self.flagged:
            self.flagged.add(id(node))
            return
        receiver = self.resolve(node.value)
        name = node.attr
        if not self.attribute_allowed(receiver, name, isinstance(node.ctx, ast.Load)):
            where = receiver if receiver in MODULES or receiver in TORCH_CLASSES else None
            construct = f"{where}.{name}" if where else f".{name}"
            if name in ("backward", "requires_grad_", "retain_grad"):
                construct += "()"
            self.hit(node, rule_for(name, "attribute"), construct)
        elif receiver is not None and f"{receiver}.{name}" in MODULES and id(node) not in self.receivers \
                and isinstance(node.ctx, ast.Load):
            self.hit(node, "module_value", f"{receiver}.{name} (a module) as a value")

    def visit_MatchClass(self, node):  # `case X(attr=...)` reads attributes by name
        for name in node.kwd_attrs:
            if not self.attribute_allowed(None, name):
                self.hit(node, rule_for(name, "attribute"), f".{name}")

    # -- calls and strings -------------------------------------------------------------------------
    def visit_Call(self, node):
        for keyword in node.keywords:
            if keyword.arg == "requires_grad" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                self.hit(node, "requires_grad", "requires_grad=True")
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("format", "format_map"):
            # A format field reads attributes by name ("{0.gi_frame.f_back}"): the format string must be written
            # out, so that its fields can be read here.
            text = func.value
            if isinstance(text, ast.Name) and text.id == "str" and node.args:  # str.format("...", x)
                text = node.args[0]
            if not (isinstance(text, ast.Constant) and isinstance(text.value, str)):
                self.hit(node, "getattr", "str.format with a format string that is not written out")
            elif re.search(r"\{[^}:!]*[.\[]", text.value):
                self.hit(node, "getattr", "str.format with an attribute field")

    def visit_Constant(self, node):
        """A string naming autograd's switches, as in torch.zeros(3, **{'requires_grad': True})."""
        if isinstance(node.value, str) and node.value in DANGEROUS_STRING:
            self.hit(node, rule_for(node.value, "autograd"), repr(node.value))

