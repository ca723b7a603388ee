"""The static integrity scan: every autograd route and way around it is found, correct code is not."""

import time

import pytest
import yaml

from conftest import ASSIGNMENTS, SOLUTIONS, VARIANTS
from grader.config import GradingConfig, IntegrityConfig
from grader.submission.integrity import RULES, scan

ROUTES = [
    ("loss.backward()", "backward"),
    ("torch.Tensor.backward(loss)", "backward"),
    ("g = x.grad", "grad"),
    ("x.requires_grad_()", "requires_grad"),
    ("x.requires_grad = True", "requires_grad"),
    ("x = torch.zeros(3, requires_grad=True)", "requires_grad"),
    ("import torch.autograd", "autograd"),
    ("from torch import autograd", "autograd"),
    ("from torch.autograd import grad", "autograd"),
    ("g = torch.autograd.grad(y, x)", "autograd"),
    ("with torch.enable_grad():\n    pass", "enable_grad"),
    ("torch.set_grad_enabled(True)", "set_grad_enabled"),
    ("import torch.func", "torch.func"),
    ("from torch import func", "torch.func"),
    ("from torch.func import vjp", "torch.func"),
    ("g = torch.func.grad(f)(x)", "torch.func"),
    ("import torch as t\ng = t.func.grad(f)(x)", "torch.func"),
    ("import functorch", "functorch"),
    ("from functorch import grad", "functorch"),
    ("out = F.vjp(f, x)", "vjp"),
    ("out = F.jvp(f, (x,), (v,))", "jvp"),
    ("j = F.jacrev(f)(x)", "jacrev"),
    ("j = F.jacfwd(f)(x)", "jacfwd"),
    ("h = F.hessian(f)(x)", "hessian"),
    ("j = torch.autograd.functional.jacobian(f, x)", "autograd"),
    ("d = torch.autograd.forward_ad.make_dual(x, t)", "autograd"),
    ("fn = y.grad_fn", "autograd"),
    ("x.retain_grad()", "autograd"),
    ("d = torch.ops.aten.tanh_backward(g, y)", "backward_kernel"),
    ("torch._C._set_grad_enabled(True)", "torch_internals"),
    ("getattr(x, 'back' + 'ward')()", "getattr"),
    ("getattr(loss, 'backward')()", "getattr"),
    ("name = 'autograd'", "autograd"),
    ("m = vars(torch)['autograd']", "autograd"),
    ("m = vars(torch)['auto' + 'grad']", "dynamic_namespace"),
    ("m = globals()['torch']", "dynamic_namespace"),
    ("import sys\nm = sys.modules['torch']", "dynamic_namespace"),
    ("import builtins", "dynamic_namespace"),
    ("d = torch.__dict__", "dynamic_namespace"),
    ("t = __import__('torch')", "__import__"),
    ("import importlib", "importlib"),
    ("from importlib import import_module", "importlib"),
    ("import pkgutil\ng = pkgutil.resolve_name('torch.auto' + 'grad.grad')", "importlib"),
    ("import runpy", "importlib"),
    ("import code\ncode.InteractiveInterpreter().runsource(src)", "exec"),
    ("exec('x = 1')", "exec"),
    ("y = eval('1')", "eval"),
    ("c = compile('1', 'f', 'eval')", "compile"),
    ("import ctypes", "introspection"),
    ("import inspect", "introspection"),
    ("import gc", "introspection"),
    ("s = object.__subclasses__()", "introspection"),
    ("d = {name: locals()['d' + name] for name in ['h']}", "dynamic_namespace"),
    ("import pickle", "pickle"),
    ("from operator import attrgetter\ng = attrgetter('grad')(x)", "getattr"),
]

# Ways around a deny list (issue 14): each must still be found, on its line.
AROUND = [
    ("_ga = getattr\nf = _ga(torch, 'auto' + 'grad')", "getattr"),
    ("import builtins as b\nb.getattr(x, 'y')", "dynamic_namespace"),
    ("f = __builtins__['getattr']", "dynamic_namespace"),
    ("t = torch\nt._C._set_grad_enabled(True)", "module_value"),
    ("t = [torch][0]\nt.autograd.grad(y, x)", "autograd"),
    ("torch._C.TensorBase.requires_grad_(x)", "torch_internals"),
    ("torch.autograd.Variable._execution_engine.run_backward", "autograd"),
    ("def native_batch_norm_backward(): pass\ntorch.ops.aten.native_batch_norm_backward(a, b)", "backward_kernel"),
    ("torch._softmax_backward_data(g, y, 1, y.dtype)", "backward_kernel"),
    ("torch.embedding_dense_backward(g, i, 27, -1, False)", "backward_kernel"),
    ("import grader.course.cases", "import"),
    ("from grader import cases", "import"),
    ("import sys\nsys.modules['grader.course.cases']", "dynamic_namespace"),
    ("f.__closure__[0].cell_contents", "introspection"),
    ("t = torch.nn.functional.torch", "attribute"),
    ("from torch.nn.functional import torch", "attribute"),
    ("import typing\ntyping.sys.modules", "attribute"),
    ("import numpy as np\nnp.load('x')", "attribute"),
    ("open('/etc/passwd').read()", "builtin"),
    ("def f(open):\n    return open\nopen('x')", "builtin"),
    ("import os", "import"),
    ("'{0.__globals__}'.format(f)", "getattr"),
    ("torch.library.Library('aten', 'IMPL')", "backward_kernel"),
    ("torch.utils.checkpoint.checkpoint(f, x)", "attribute"),
    ("torch.vmap(f)(x)", "torch.func"),
    ("from torch import _C", "torch_internals"),
    ("from torch import *", "import"),
    ("class A:\n    def __getattr__(self, n): pass", "introspection"),
    ("class T(torch.Tensor):\n    def __torch_dispatch__(cls, func, types, args=(), kwargs=None): pass",
     "introspection"),
    ("torch.load('x')", "attribute"),
    ("x.untyped_storage()", "attribute"),
    ("y = torch.zeros(3, **{'requires_grad': True})", "requires_grad"),
    ("class A:\n    def __init__(self):\n        self._grad_fn = 1\n\ng = x._grad_fn", "torch_internals"),
    ("class A:\n    def grad_fn(self): pass\n\ng = x.grad_fn", "autograd"),
    ("match x:\n    case torch.Tensor(grad_fn=g): pass", "autograd"),
    ("hasattr(x, 'grad')", "getattr"),
    ("f = lambda: torch", "module_value"),
    ("from .grader import cases", "import"),
    ("import math as open", "builtin"),
    ("g = (i for i in [1])\nf = g.gi_frame.f_back", "introspection"),
    # The names a submission defines never exempt the interpreter's (a generator's frame leads to the worker's).
    ("class A:\n    def __init__(self):\n        self.gi_frame = self.f_back = self.f_locals = None\n\n"
     "def walk():\n    yield me.gi_frame.f_back.f_locals\nme = walk()", "introspection"),
    ("class A:\n    def mro(self): pass\n\nbases = type(x).mro()", "introspection"),
    ("async def co(): pass\nclass A:\n    cr_frame = 1\nf = co().cr_frame", "introspection"),
    # Format fields read attributes by name: a format string built at run time cannot be checked.
    ("field = '{0.grad' + '_fn}'\nprint(field.format(x))", "getattr"),
    ("print(str.format('{0.grad_fn}', x))", "getattr"),
    ("class M(torch.Tensor):\n    pass\nx.__class__ = M", "introspection"),
    ("print('{t.grad_fn}'.format_map({'t': x}))", "getattr"),
]

CORRECT = [
    "import torch\nprint(torch.__version__, type(x).__name__, x.__class__.__name__)\n"
    "def f():\n    'doc'\nprint(f.__doc__, f.__qualname__)",
    "from collections import namedtuple\nP = namedtuple('P', ['a', 'b'])\np = P(1, 2)\n"
    "print(p.a, p.b, p._asdict(), p._replace(a=3))",
    "import functools\n@functools.lru_cache(maxsize=None)\ndef f(n):\n    return n\nf.cache_clear()",
    "class Stream:\n    def send(self, x):\n        return x\n    def close(self):\n        pass\n\n"
    "s = Stream()\ns.send(1)\ns.close()\nprint(str.format('{:.4f}', 1.0), '{name}'.format(name='x'))",
    "grads = {}\ngrad = dh * (1 - h**2)\ngrads['h'] = grad",
    "class Tanh:\n    def backward(self, dout):\n        self.grad = dout\n        return dout\n\n"
    "def f(layer, d):\n    return layer.backward(d), layer.grad",
    "print('backward pass done')\nmsg = f'd{name} ready'",
    '"""Uses no autograd: loss.backward() is not allowed, requires_grad neither."""',
    "def f():\n    '''Backward pass by hand, no torch.autograd.'''\n"
    "    # loss.backward() would be cheating\n    return 1",
    "from cross_entropy import cross_entropy_backward\nimport batchnorm\n"
    "d = batchnorm.batchnorm_backward(1, 2, 3, 4)",
    "with torch.no_grad():\n    y = x.detach().clone()\nwith torch.inference_mode():\n    z = y * 2",
    "x = torch.zeros(3, requires_grad=False)",
    "import torch.nn.functional as F\ny = F.one_hot(Xb, 27).float()",
    "status = {'code': 0, 'grad': 1, 'inspect': 2, 'pickle': 3}",
    # Styles students really write (issue 14): classes, helpers, constants, loops, comprehensions.
    "import torch\n\nclass Linear:\n    def __init__(self, W):\n        self.W = W\n        self._cache = None\n\n"
    "    def __call__(self, x):\n        self._cache = x\n        return x @ self.W\n\n"
    "    def backward(self, dout):\n        self.grad = self._cache.T @ dout\n        return dout @ self.W.T\n",
    "import numpy as np\nimport math\nEPS = np.float64(1e-5)\nscale = math.sqrt(2.0) * np.pi",
    "import torch\ndef f(demb, Xb, vocab_size):\n    dC = torch.zeros(vocab_size, demb.shape[2])\n"
    "    dC.index_add_(0, Xb.view(-1), demb.view(-1, demb.shape[2]))\n"
    "    d2 = torch.zeros_like(dC).scatter_add_(0, Xb.view(-1, 1).expand(-1, 4), demb.view(-1, 4))\n"
    "    for k in range(Xb.shape[0]):\n        for j in range(Xb.shape[1]):\n            dC[Xb[k, j]] += demb[k, j]\n"
    "    return torch.einsum('ij,jk->ik', dC, torch.eye(dC.shape[1]))",
    "from dataclasses import dataclass\nfrom functools import reduce\nimport itertools\n@dataclass\nclass P:\n"
    "    a: int = 0\nx = reduce(lambda a, b: a + b, [1, 2])\nfor i, j in itertools.product(range(2), range(3)):\n"
    "    print(f'{i} {j:>3}', '{} {:.3f}'.format(1, 2.0), '%d' % 3)",
    "import torch\n@torch.no_grad()\ndef f(x):\n    return x.detach().clone().cpu().numpy().tolist()\n"
    "if __name__ == '__main__':\n    print(torch.tensor([1.0]), f(torch.ones(2)))",
    "from __future__ import annotations\nimport torch\nfrom typing import Dict\n"
    "def f(x: torch.Tensor) -> Dict[str, torch.Tensor]:\n    assert isinstance(x, torch.Tensor), type(x).__name__\n"
    "    try:\n        return {'x': x.max(1, keepdim=True).values}\n    except (RuntimeError, ValueError) as err:\n"
    "        raise ValueError(str(err)) from err",
    "import torch\nfrom torch import nn\ndef f(p, grad, lr):\n    p.data += -lr * grad\n"
    "    return nn.functional.softmax(p, dim=0)",
    "input = 3\nid = 4\nkind = type(input)",
    "import torch\n__all__ = ['eps']\neps = torch.finfo(torch.float64).eps",
    "import sys\nprint('warning: slow', file=sys.stderr)\nsys.stdout.write('x')\nsys.stdout.flush()",
    "import threading\nfrom concurrent.futures import ThreadPoolExecutor\n"
    "with ThreadPoolExecutor(2) as pool:\n    r = pool.submit(len, [1]).result()\n"
    "t = threading.Thread(target=print)\nt.start()\nt.join()",
]


def flagged(source: str, **kwargs) -> set[str]:
    return {f.rule for f in scan({"atomic.py": source}, **kwargs)}


@pytest.mark.parametrize("source,rule", ROUTES, ids=[r[0].splitlines()[-1][:40] for r in ROUTES])
def test_every_route_is_found(source, rule):
    findings = scan({"atomic.py": "import torch\n" + source})
    assert rule in {f.rule for f in findings}
    first = findings[0]
    assert first.exercise == "atomic" and first.file == "atomic.py" and first.line >= 2
    assert first.message.startswith(f"atomic.py line {first.line}: ") and "is not allowed" in first.message


@pytest.mark.parametrize("source,rule", AROUND, ids=[r[0].splitlines()[-1][:40] for r in AROUND])
def test_ways_around_a_deny_list_are_found(source, rule):
    findings = scan({"atomic.py": "import torch\n" + source})
    assert rule in {f.rule for f in findings}, [f.message for f in findings]
    last = 1 + len(source.splitlines())
    assert all(f.file == "atomic.py" and 2 <= f.line <= last for f in findings)
    assert all(f.message.startswith(f"atomic.py line {f.line}: ") for f in findings)


def test_a_helper_module_gives_only_its_own_names():
    files = {"helpers.py": "import torch\nfrom torch.nn.functional import softmax\n\ndef g(x):\n    return x\n",
             "atomic.py": "import helpers\nfrom . import helpers as h\na = helpers.g(1) + h.softmax(1)\n"
                          "b = helpers.torch.autograd\n"}
    findings = scan(files)
    assert [(f.file, f.line, f.pattern) for f in findings] == [("atomic.py", 4, ".torch")]


def test_a_module_that_is_not_installed_is_left_to_the_worker():
    assert scan({"batchnorm.py": "import torch_utils_that_do_not_exist\nfrom nowhere_at_all import x\n"}) == []


def test_a_course_can_widen_the_list():
    source = "import json\nimport torch\ny = json.dumps(1) + torch.load('f')\nopen('x')\n"
    assert {f.pattern for f in scan({"atomic.py": source})} == {"import json", "torch.load", "open"}
    assert scan({"atomic.py": source}, allow=["import json", "torch.load", "open"]) == []
    assert IntegrityConfig(allow=["import scipy", "torch.load", "open", ".foo", "eval"]).allow[-1] == "eval"
    for bad in ("nope", "grader.course.cases", "import os; x", "torch load"):
        with pytest.raises(ValueError, match="unknown integrity rule"):
            IntegrityConfig(allow=[bad])


@pytest.mark.parametrize("source", CORRECT, ids=range(len(CORRECT)))
def test_correct_code_is_not_flagged(source):
    assert flagged(source) == set()


def test_solutions_stubs_and_correct_variants_are_clean():
    for folder in (SOLUTIONS, ASSIGNMENTS):
        assert scan({p.name: p.read_text() for p in folder.glob("*.py")}) == []
    manifest = yaml.safe_load((VARIANTS / "manifest.yaml").read_text())
    for variant in manifest["variants"]:
        files = {p.name: p.read_text() for p in SOLUTIONS.glob("*.py")}
        files[variant["replaces"]] = (VARIANTS / variant["file"]).read_text()
        assert scan(files) == [], variant["file"]


def test_a_helper_costs_every_exercise_that_imports_it():
    files = {
        "helpers.py": "import torch\n\ndef g(y, x):\n    return torch.autograd.grad(y, x)\n",
        "middle.py": "from helpers import g\n",
        "atomic.py": "import middle\n",
        "train.py": "from . import helpers\n",
        "batchnorm.py": "x = 1\n",
        "unused.py": "import torch\ntorch.enable_grad()\n",
    }
    findings = scan(files)
    costs = {(f.exercise, f.file) for f in findings}
    assert costs == {("atomic", "helpers.py"), ("train", "helpers.py"), (None, "unused.py")}
    atomic = next(f for f in findings if f.exercise == "atomic")
    assert atomic.message.startswith("helpers.py line 4 (imported by atomic.py): ")


def test_allowed_rules_are_not_reported():
    source = "y = eval('1')\nloss.backward()\n"
    assert flagged(source) == {"eval", "backward"}
    assert flagged(source, allow=["eval"]) == {"backward"}


def test_the_allow_list_is_validated():
    assert IntegrityConfig(allow=["eval", "exec"]).allow == ["eval", "exec"]
    with pytest.raises(ValueError, match="unknown integrity rule nope"):
        IntegrityConfig(allow=["nope"])
    assert GradingConfig.model_fields["integrity"].default_factory().allow == []
    assert set(RULES) >= {"backward", "grad", "eval", "exec", "getattr", "importlib", "torch.func"}


def test_unreadable_or_huge_files_never_break_the_scan():
    files = {
        "atomic.py": "def backward_atomic(**fwd)\n    return {}\n",  # a syntax error: the worker reports it
        "batchnorm.py": "x = 1\0\n",
        "cross_entropy.py": "x = " + "(" * 5000 + ")" * 5000 + "\n",
        "embedding.py": "x = 1 + " * 20000 + "1\n",
        "train.py": "loss.backward()\n" * 50_000,
    }
    started = time.monotonic()
    findings = scan(files)
    assert time.monotonic() - started < 20
    assert {f.file for f in findings} == {"train.py"} and len(findings) == 20  # capped per file


def test_findings_name_file_line_and_construct():
    findings = scan({"cross_entropy.py": "import torch\n\n\ndef cross_entropy_backward(logits, Yb):\n"
                                         "    return torch.autograd.grad(logits.sum(), logits)[0]\n"})
    assert {f.pattern for f in findings} == {"torch.autograd"}
    finding = findings[0]
    assert (finding.exercise, finding.file, finding.line) == ("cross_entropy", "cross_entropy.py", 5)
    assert "automatic differentiation" in finding.message and "by hand" in finding.message


def test_non_python_files_are_ignored():
    assert scan({"notes.txt": "loss.backward()", "atomic.py": "x = 1"}) == []


@pytest.mark.parametrize("name,source", [
    ("ctypes", "import ctypes\nlib = ctypes.CDLL('libc10.so')"),
    ("os", "import os\nos.system('true')"),
    ("torch", "import torch\nt = torch.autograd"),
    ("grader", "import grader.course.mlp\nf = grader.course.mlp"),
])
def test_a_file_named_like_a_real_module_is_not_the_submissions_own(name, source):
    """A real module already imported in the sandbox (ctypes, os, torch, grader) wins over the student's file of
    that name, so the file's names never stand for the module's: the import is checked as the real one."""
    findings = scan({"atomic.py": source, f"{name}.py": "CDLL = system = autograd = mlp = None\n"})
    assert any(f.file == "atomic.py" and f.line in (1, 2) for f in findings), [f.message for f in findings]
    shadow = [f for f in findings if f.file == f"{name}.py"]
    assert [(f.exercise, f.rule, f.line) for f in shadow] == [("atomic", "shadowing", None)]
    assert "rename the file" in shadow[0].message
    assert scan({"atomic.py": "import helpers\nx = helpers.CDLL", "helpers.py": "CDLL = 1\n"}) == []
