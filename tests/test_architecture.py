"""The package's shape, read from its source with `ast` (nothing is imported).

- no grader module over 400 lines, no package folder with more than 12 modules;
- no import cycle between grader modules (imports inside functions count: they are dependencies too);
- the phases import one way: course <- submission <- sandbox <- scoring <- feedback <- pipeline <- views
  (outputs, batch, release) <- the command line; a module may import its own phase and earlier ones;
- scoring never starts a process, and the outputs read a finished Report only.

Each test lists everything that breaks its rule, with the import that does it, so the message is the to-do list.
"""

import ast
import functools
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "grader"
MAX_LINES = 400
MAX_MODULES = 12  # per folder, not counting its __init__.py (the package itself)

# Phase of each top-level name under grader/ (a folder or a module). report.py is the schema every phase
# writes or reads and safe_text.py the text rules; both are vocabulary, below the phases. config.py is the
# policy, read from the submission phase on (it checks grading.yaml's integrity.allow with the scan's rules).
# outputs/pytest_plugin.py, outputs/jupyter.py and the package's own `grader.check()` are front ends that
# grade (like the CLI), not views.
PHASES = {
    "__init__": 7, "report": 0, "safe_text": 0, "phases": 0, "errors": 0, "course": 0,
    "config": 1, "submission": 1,
    "sandbox": 2,
    "scoring": 3,
    "feedback": 4,
    "pipeline": 5,
    "outputs": 6, "batch": 6, "release": 6,
    "cli": 7, "__main__": 7, "outputs.pytest_plugin": 7, "outputs.jupyter": 7,
    # The statement helpers the lecture's reader and the worker share (staged into the sandbox with the rest
    # of inside/): pure `ast`, so the reader may use them.
    "sandbox.inside.statements": 1,
}
PROCESS_MODULES = {"subprocess", "multiprocessing", "concurrent.futures.process", "pty"}
PROCESS_CALLS = {"fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "popen", "execv", "execve", "execvp",
                 "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnl", "spawnle"}
# What a view may reach: the Report, the course's facts (labels, the graph of the forward pass), the feedback's
# torch-free names of the kinds of mistake (grader.feedback.labels) and the policy (hidden_visibility; the
# Gradescope zip checks grading.yaml), whose own imports are its business.
POLICY = "grader.config"
VIEW_REACH = (POLICY, "grader.report", "grader.safe_text", "grader.errors", "grader.course", "grader.feedback.labels", "grader.outputs")


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package is its __init__.py)."""
    return _modules(PACKAGE)


def sources(package: Path) -> list[Path]:
    """The package's modules: .py files in folders with an __init__.py. Others are data: notebook cells as text
    (release/templates/, course/exercises/lessons/), run in a student's notebook, never imported by the grader."""
    return sorted(p for p in package.rglob("*.py") if (p.parent / "__init__.py").is_file())


@functools.cache
def _modules(package: Path) -> dict[str, Path]:
    found = {}
    for path in sources(package):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def resolve(name: str, known: dict) -> str | None:
    """The grader module an import names: `grader.a.b` itself, else its package."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path, known: dict) -> dict[str, int]:
    """The grader modules a file imports (anywhere in it) -> the line of the first such import."""
    found: dict[str, int] = {}
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..y import z: relative to the file's package
                here = package.split(".")
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            if name.split(".")[0] == "grader" and (target := resolve(name, known)):
                found.setdefault(target, node.lineno)
    return found


def graph() -> dict[str, dict[str, int]]:
    """Module -> the grader modules it imports -> the line of the first such import."""
    return _graph(PACKAGE)


@functools.cache
def _graph(package: Path) -> dict[str, dict[str, int]]:
    known = _modules(package)
    return {name: {t: line for t, line in imports(path, known).items() if t != name and t != "grader"}
            for name, path in known.items()}


def cycles(edges: dict[str, set[str] | dict]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(result)


def phase(module: str) -> int:
    """The phase of the longest PHASES entry that the module is or is inside."""
    parts = module.split(".")[1:] or ["__init__"]
    return next(PHASES[key] for i in range(len(parts), 0, -1) if (key := ".".join(parts[:i])) in PHASES)


def reach(start: str, edges: dict, stop: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every module `start` reaches through imports -> one path to it (not going on through `stop`)."""
    paths, todo = {start: [start]}, [start]
    while todo:
        current = todo.pop()
        if current in stop:
            continue
        for target in sorted(edges.get(current, ())):
            if target not in paths:
                paths[target] = paths[current] + [target]
                todo.append(target)
    return paths


def starts_processes(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name in PROCESS_MODULES for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module in PROCESS_MODULES:
            return True
        if (isinstance(node, ast.Attribute) and node.attr in PROCESS_CALLS
                and isinstance(node.value, ast.Name) and node.value.id == "os"):
            return True
    return False


def _where(module: str, target: str, edges: dict) -> str:
    return f"{module} -> {target} ({modules()[module].relative_to(PACKAGE.parent)}:{edges[module][target]})"


# --- the checker itself, on made-up graphs ------------------------------------------------------

def test_the_cycle_finder_finds_cycles_and_only_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"b"}}) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}) == [["a", "b"], ["c", "d"]]


def test_imports_are_resolved_to_modules_wherever_they_are(tmp_path, monkeypatch):
    package = tmp_path / "grader"
    (package / "sub").mkdir(parents=True)
    (package / "data").mkdir()
    for name in ("__init__.py", "sub/__init__.py", "sub/a.py", "sub/b.py", "top.py", "data/cell.py"):
        (package / name).write_text("")
    (package / "sub/a.py").write_text("from grader.sub import b\nfrom . import b as again\n"
                                      "def f():\n    from grader.top import thing\n    import grader.sub\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    known = modules()
    assert set(known) == {"grader", "grader.sub", "grader.sub.a", "grader.sub.b", "grader.top"}
    assert imports(package / "sub/a.py", known) == {"grader.sub.b": 1, "grader.sub": 1, "grader.top": 4}
    assert phase("grader.outputs.jupyter") == 7 and phase("grader.outputs.terminal") == 6
    assert phase("grader.sandbox.inside.session") == 2 and phase("grader.course.mlp") == 0 and phase("grader") == 7
    assert phase("grader.sandbox.inside.statements") == 1
    edges = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert reach("a", edges) == {"a": ["a"], "b": ["a", "b"], "c": ["a", "b", "c"]}
    assert reach("a", edges, stop=("b",)) == {"a": ["a"], "b": ["a", "b"]}


# --- the rules ------------------------------------------------------------------------------------

def test_no_module_is_longer_than_400_lines():
    long = {str(path.relative_to(PACKAGE.parent)): n for path in sources(PACKAGE)
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, "modules over 400 lines: " + ", ".join(f"{p} ({n})" for p, n in sorted(long.items()))


def test_no_folder_has_more_than_12_modules():
    crowded = {}
    for folder in sorted({path.parent for path in sources(PACKAGE)}):
        count = sum(1 for p in folder.glob("*.py") if p.name != "__init__.py")
        if count > MAX_MODULES:
            crowded[str(folder.relative_to(PACKAGE.parent))] = count
    assert not crowded, "folders with more than 12 modules: " + ", ".join(f"{f} ({n})" for f, n in crowded.items())


def test_no_import_cycles():
    edges = graph()
    found = cycles(edges)
    lines = []
    for component in found:
        inside = set(component)
        lines += [_where(m, t, edges) for m in component for t in sorted(edges[m]) if t in inside]
    assert not found, "import cycles (every edge inside each): \n" + "\n".join(lines)


def test_the_phases_import_one_way():
    edges = graph()
    backward = [_where(m, t, edges) for m in sorted(edges) for t in sorted(edges[m]) if phase(t) > phase(m)]
    assert not backward, "imports of a later phase (course <- submission <- sandbox <- scoring <- feedback <- " \
                         "pipeline <- outputs/batch/release <- cli):\n" + "\n".join(backward)


def test_scoring_never_starts_a_process():
    edges, files = graph(), modules()
    starters = {name for name, path in files.items() if starts_processes(path)}
    assert "grader.sandbox.levels" in starters  # the checker sees the launcher (subprocess.Popen of the worker)
    bad = []
    for module in (m for m in files if m.startswith("grader.scoring")):
        paths = reach(module, edges)
        bad += [" -> ".join(paths[s]) for s in sorted(starters & set(paths))]
    assert not bad, "scoring reaches code that starts processes:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(m for m in modules() if m.startswith("grader.outputs.") and phase(m) == 6))
def test_outputs_read_a_finished_report_only(module):
    paths = reach(module, graph(), stop=(POLICY,))
    beyond = [" -> ".join(path) for target, path in sorted(paths.items())
              if not any(target == allowed or target.startswith(allowed + ".") for allowed in VIEW_REACH)]
    assert not beyond, f"{module} reaches more than the Report and the course:\n" + "\n".join(beyond)
