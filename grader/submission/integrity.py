"""Static scan of a submission: an allow list of what a hand-written backward pass needs.

Autograd computes the grader's answers, so a submission may not use it, nor
anything that reaches around a check: computed attribute access, dunders,
torch's internals and kernels, the interpreter's namespaces, imports beyond a
few. A deny list of spellings is beaten by aliasing, so this reads the source
with `ast` (nothing is run) and lets through only:
- imports of torch, torch.nn.functional (and torch.nn, linalg, special, fft),
  math, numpy, a few pure standard modules, and the submission's own files;
- attributes of those modules that compute forward values (grader.submission.allowlist),
  tensor methods, the methods of Python's containers and strings, and the
  names the submission defines itself (never one of torch's autograd names);
- Python's builtins that computing needs (range, len, zip, print, ...);
- a module only as `module.name`, never as a value that could be passed on.
Everything else is a finding with its file, line and why; a finding costs the
exercise whose file has it, and every exercise that imports that file. The
worker's runtime guard (grader.sandbox.inside.guard) is the backstop for what slips through.

`grading.yaml`'s `integrity.allow` widens the list: a rule id (a RULES key:
the whole class of findings) or one construct as a finding names it
(`import scipy`, `torch.load`, `open`, `.foo`).
"""

import ast
import builtins
import functools
import importlib.util
import re
import sys
import types
from dataclasses import dataclass

from grader.submission import allowlist
from grader.course.registry import EXERCISES, graded_by_training

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

_EXCEPTIONS = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
               and issubclass(getattr(builtins, n), BaseException)}
ALLOWED_BUILTINS = _EXCEPTIONS | set(
    "abs all any ascii bin bool bytes callable chr classmethod complex dict divmod enumerate filter float format "
    "frozenset hash hex id input int isinstance issubclass iter len list map max min next object oct ord pow print "
    "property range repr reversed round set slice sorted staticmethod str sum super tuple type zip "
    "None True False NotImplemented Ellipsis __name__ __debug__ __all__ __slots__ __doc__".split())
BUILTIN_NAMES = set(dir(builtins))
# Dunder attributes that are plain: super().__init__(), a function's name.
SAFE_DUNDER_ATTRS = {"__init__", "__name__", "__qualname__", "__doc__", "__version__", "__class__"}  # read only
# Dunder methods a student's class may define (operators, containers, printing); not attribute or torch hooks.
SAFE_DUNDER_DEFS = set(
    "__init__ __call__ __repr__ __str__ __len__ __iter__ __next__ __getitem__ __setitem__ __contains__ __eq__ "
    "__ne__ __lt__ __le__ __gt__ __ge__ __hash__ __bool__ __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ "
    "__mul__ __rmul__ __imul__ __truediv__ __rtruediv__ __itruediv__ __matmul__ __rmatmul__ __pow__ __rpow__ "
    "__neg__ __pos__ __abs__ __enter__ __exit__ __post_init__".split())

def _dunder_name(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


PY_METHODS = set(
    "append extend insert pop remove reverse sort index count clear copy keys values items get update setdefault "
    "popitem add discard union intersection difference symmetric_difference issubset issuperset join split rsplit "
    "strip lstrip rstrip startswith endswith replace upper lower title capitalize ljust rjust center zfill "
    "splitlines partition rpartition removeprefix removesuffix isdigit isalpha isalnum isspace find rfind format "
    "encode decode real imag conjugate is_integer bit_length as_integer_ratio numerator denominator "
    "start stop step submit result is_alive eps tiny resolution bits smallest_normal write flush "
    "_asdict _replace _fields _make cache_clear cache_info".split())  # namedtuples, functools.lru_cache

NUMPY = set(
    "pi e inf nan newaxis sqrt exp log log2 log10 abs sum mean prod max min maximum minimum array asarray zeros "
    "ones arange linspace eye float64 float32 int64 int32 isclose allclose round floor ceil tanh sign square "
    "finfo dtype ndarray shape reshape transpose dot matmul float16 int8 uint8 bool_ absolute power argmax argmin "
    "clip where stack concatenate full full_like zeros_like ones_like empty diag outer einsum cumsum var std "
    "expand_dims squeeze isfinite isnan isinf exp2 log1p expm1 cbrt reciprocal multiply add subtract divide "
    "negative".split())
TORCH_NN = {"functional"}
# Modules that may be imported, and the attributes they give (None: only via `from m import name`, any public name).
MODULES = {
    "torch": allowlist.TORCH, "torch.nn": TORCH_NN, "torch.nn.functional": allowlist.FUNCTIONAL,
    "torch.linalg": allowlist.LINALG, "torch.special": allowlist.SPECIAL, "torch.fft": allowlist.FFT,
    "math": allowlist.MATH, "numpy": NUMPY, "__future__": {"annotations"},
    "typing": {"Any", "Optional", "Union", "Dict", "List", "Tuple", "Callable", "Sequence", "Iterable", "Mapping",
               "TYPE_CHECKING", "NamedTuple", "TypedDict", "Literal"},
    "dataclasses": {"dataclass", "field", "fields", "asdict", "astuple", "replace"},
    "functools": {"reduce", "partial", "lru_cache", "cache", "wraps", "cached_property", "total_ordering"},
    "itertools": {"product", "chain", "combinations", "permutations", "accumulate", "repeat", "count", "cycle",
                  "islice", "starmap", "zip_longest", "pairwise", "groupby", "tee", "compress", "takewhile",
                  "dropwhile", "filterfalse"},
    "collections": {"defaultdict", "OrderedDict", "namedtuple", "Counter", "deque"},
    "copy": {"copy", "deepcopy"}, "random": {"seed", "random", "randint", "choice", "shuffle", "sample", "uniform"},
    "statistics": {"mean", "median", "stdev", "variance", "fmean"},
    "fractions": {"Fraction"}, "time": {"time", "perf_counter", "monotonic"},
    # Threads (capped by the sandbox), without settrace/setprofile, which hand out frames.
    "threading": {"Thread", "Lock", "RLock", "Event", "Barrier", "Semaphore"},
    "sys": {"stderr", "stdout", "maxsize", "float_info", "version", "version_info"},  # a warning on stderr
    "warnings": {"warn"},
    "concurrent.futures": {"ThreadPoolExecutor", "as_completed", "wait"},
    "matplotlib": set(), "matplotlib.pyplot": set(),  # a lecture notebook's import cell; plotting never runs
}
SUBMODULES = {path.rsplit(".", 1)[1]: path for path in MODULES if "." in path}
TORCH_CLASSES = {"torch.Tensor": allowlist.TENSOR}
DEFAULT_ALIASES = {"torch": "torch", "F": "torch.nn.functional"}  # what lecture notebooks get without importing
# Every name the general (unknown receiver) attribute check allows.
GENERAL = (allowlist.TENSOR | PY_METHODS | allowlist.TORCH | allowlist.FUNCTIONAL | allowlist.LINALG
           | allowlist.SPECIAL | allowlist.FFT | allowlist.MATH | NUMPY) - {"nn", "linalg", "special", "fft"}
# A name the student defines never exempts these (torch's own autograd and internal attributes).
# The interpreter's own objects (frames, generators, coroutines, code, tracebacks, classes) lead to every frame's
# locals and globals: their attribute names are never the submission's, whatever it defines.
_INTERNALS = (types.FrameType, types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType, types.CodeType,
              types.TracebackType, types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType,
              types.CellType, type)
INTERPRETER_NAMES = {name for kind in _INTERNALS for name in dir(kind) if not _dunder_name(name)} - PY_METHODS \
    - {"send", "throw", "close", "asend", "athrow", "aclose"}  # a generator's plain methods: a student's class may have them
NEVER_OWNED = (allowlist.TENSOR_EXCLUDED | allowlist.TENSOR_PRIVATE | set(AUTOGRAD_NAMES) | INTERPRETER_NAMES
               | {"torch", "sys"})
OWNABLE = {"backward", "grad"}  # a Layer class's .backward()/.grad: left to the runtime guard, which catches torch's
DANGEROUS_STRING = {"requires_grad", "grad_fn", "_C", "autograd", "__globals__", "__builtins__", "__import__"}
CONSTRUCT = re.compile(r"^(import [A-Za-z_][\w.]*|[A-Za-z_][\w.]*|\.[A-Za-z_]\w*)$")
MAX_PER_FILE = 20


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
    return module not in {ex.module for ex in EXERCISES.values()} and (module in sys.stdlib_module_names or module in MODULES
                                               or _installed(module))


def _rule(name: str, default: str) -> str:
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


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


class _Defined:
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


class _Scanner:
    """Checks each node once, innermost first (so a chain like torch.ops.aten.x is reported at its first step)."""

    def __init__(self, own: dict[str, set[str]], owned: set[str], defined: _Defined, allow: set[str]):
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
            rule = _rule(part, rule) if rule == "import" else rule
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
                self.hit(node, _rule(alias.name, "attribute"), construct)
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
            self.hit(node, _rule(name, "attribute"), construct)
        elif receiver is not None and f"{receiver}.{name}" in MODULES and id(node) not in self.receivers \
                and isinstance(node.ctx, ast.Load):
            self.hit(node, "module_value", f"{receiver}.{name} (a module) as a value")

    def visit_MatchClass(self, node):  # `case X(attr=...)` reads attributes by name
        for name in node.kwd_attrs:
            if not self.attribute_allowed(None, name):
                self.hit(node, _rule(name, "attribute"), f".{name}")

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
            self.hit(node, _rule(node.value, "autograd"), repr(node.value))


def _parse(source: str):
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # the worker reports why it cannot be imported


def _imports(nodes: list) -> set[str]:
    """Top-level module names a file imports."""
    names = set()
    for node in nodes:
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


def _importers(nodes: dict[str, list]) -> dict[str, set[str]]:
    """File -> the exercise ids that import it, directly or through other files."""
    modules = {name.removesuffix(".py"): name for name in nodes}
    edges = {name: {modules[m] for m in _imports(found) if m in modules} for name, found in nodes.items()}
    result = {name: set() for name in nodes}
    for ex in EXERCISES.values():
        if ex.file not in nodes:
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
    return _scan_trees(trees, allow)


CELL_LINES = 1_000_000  # scan_train numbers a cell's line L as cell * CELL_LINES + L


def scan_train(plan, allow: list[str] | tuple[str, ...] = ()) -> list[Finding]:
    """Exercise 4 of a lecture notebook (a grader.submission.lecture.train.TrainPlan): the same check, on exactly what runs.

    The prelude's and set-up's statements and the loop's cell without the statements that are not run
    (`loss.backward()`, `p.grad = None`, ...: plan.skips) form one file, `train.py`; each finding names its cell
    and line. A helper function of the prelude that nothing running calls (a `check` that reads `.grad`) is only
    defined: of it, what runs at definition (decorators, defaults) is checked."""
    body = []
    for entry in [*plan.prelude, *plan.setup]:
        wanted = {tuple(position) for position in entry.get("run", [])}
        tree = _parse(entry["source"])
        if tree is not None and wanted:
            body += [ast.increment_lineno(n, entry["cell"] * CELL_LINES)
                     for n in tree.body if (n.lineno, n.col_offset) in wanted]
    tree = _parse(plan.source)
    unit = next((n for n in (tree.body if tree else []) if (n.lineno, n.col_offset) == tuple(plan.unit)), None)
    if unit is not None:
        skipped = {(s.line, s.col) for s in plan.skips}
        for node in ast.walk(unit):
            for field, value in ast.iter_fields(node):
                if isinstance(value, list) and any(isinstance(v, ast.stmt) for v in value):
                    kept = [v for v in value if not (isinstance(v, ast.stmt) and (v.lineno, v.col_offset) in skipped)]
                    setattr(node, field, kept or [ast.Pass(lineno=node.lineno, col_offset=node.col_offset)])
        body.append(ast.increment_lineno(unit, plan.cell * CELL_LINES))
    _stub_uncalled(body)
    exercise = graded_by_training()
    file = exercise.file
    findings = _scan_trees({file: ast.Module(body=body, type_ignores=[])}, allow)
    for finding in findings:
        if finding.line:
            cell, line = divmod(finding.line, CELL_LINES)
            old = f"{finding.file} line {finding.line}"
            finding.file, finding.line = f"cell {cell}", line
            finding.message = finding.message.replace(old, f"cell {cell}, line {line}", 1)
    return [f for f in findings if f.exercise == exercise.id]


def _stub_uncalled(body: list) -> None:
    """Empty the bodies of top-level functions that no other statement (nor a used function) names."""
    functions = {n.name: n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}

    def names(nodes) -> set[str]:
        return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}

    used = names(n for n in body if n.__class__ not in (ast.FunctionDef, ast.AsyncFunctionDef))
    used |= names(d for f in functions.values() for d in [*f.decorator_list, f.args])
    todo = [name for name in used if name in functions]
    while todo:
        for name in names(functions[todo.pop()].body) - used:
            used.add(name)
            if name in functions:
                todo.append(name)
    for name, node in functions.items():
        if name not in used:
            node.body = [ast.Pass(lineno=node.lineno, col_offset=node.col_offset)]


def _scan_trees(trees: dict[str, ast.Module], allow) -> list[Finding]:
    nodes = {name: list(ast.walk(tree)) for name, tree in trees.items()}
    defined = {name: _Defined(tree, nodes[name]) for name, tree in trees.items()}
    own = {ex.module: {ex.function} for ex in EXERCISES.values()}  # the contract's files, submitted or not
    own.update({name.removesuffix(".py"): d.top | d.attributes for name, d in defined.items()
                if not shadows(name.removesuffix(".py"))})
    owned = set().union(*(d.attributes for d in defined.values())) | {ex.function for ex in EXERCISES.values()}
    importers = _importers(nodes)
    findings = []
    for name, tree in trees.items():
        scanner = _Scanner(own, owned, defined[name], set(allow))
        scanner.run(nodes[name])
        hits = sorted(set(scanner.hits))[:MAX_PER_FILE]
        own_ex = next((ex.id for ex in EXERCISES.values() if ex.file == name), None)
        if shadows(name.removesuffix(".py")) and importers.get(name) and "shadowing" not in allow:
            hits.insert(0, (0, "shadowing", name))
        for line, rule, construct in hits:
            exercises = sorted(importers.get(name, ())) or [None]
            for ex_id in exercises:
                via = None if ex_id is None or ex_id == own_ex else EXERCISES[ex_id].file
                findings.append(Finding(ex_id, name, line or None, rule, construct,
                                        _message(name, line, construct, rule, via)))
    return findings
