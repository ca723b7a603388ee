"""The student release, generated from the reference solutions.

`grader release` rewrites `assignments/*.py` from `solutions/*.py` (every
`# BEGIN SOLUTION` ... `# END SOLUTION` region becomes one
`dX = None  # TODO` line per answer variable, in order of first assignment)
and writes two notebooks with nbformat: the student notebook
`assignments/backprop_ninja.ipynb` and the solved one
`solutions/backprop_ninja.ipynb`. Everything is deterministic (no outputs,
fixed cell ids), so `grader release --check` can compare byte for byte.
"""

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import v4

from grader.course.registry import EXERCISES

NOTEBOOK = "backprop_ninja.ipynb"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
ANSWER = re.compile(r"^(\s*)((?:d\w*\s*,\s*)*d\w*)\s*=(?!=)")


class ReleaseError(Exception):
    """The solutions cannot be turned into a release (shown as one line)."""


def _regions(text: str, name: str):
    """Yield ("code", line) and ("region", indent, lines) items of a solution file."""
    region, indent, start = None, "", 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if region is not None:
                raise ReleaseError(f"{name}:{number}: {BEGIN} inside another solution region (opened on line {start})")
            region, indent, start = [], line[: len(line) - len(line.lstrip())], number
        elif marker == END:
            if region is None:
                raise ReleaseError(f"{name}:{number}: {END} without a matching {BEGIN}")
            yield ("region", indent, region)
            region = None
        elif region is not None:
            region.append(line)
        else:
            yield ("code", line)
    if region is not None:
        raise ReleaseError(f"{name}:{start}: {BEGIN} is never closed")


def answer_names(lines: list[str], indent: str) -> list[str]:
    """The `d...` variables a region assigns at its own indentation, in order of first assignment."""
    names: list[str] = []
    for line in lines:
        match = ANSWER.match(line)
        if match and match.group(1) == indent:
            for name in (part.strip() for part in match.group(2).split(",")):
                if name not in names:
                    names.append(name)
    return names


def strip_solutions(text: str, name: str = "<solution>") -> str:
    """The student stub: each solution region becomes `dX = None  # TODO` lines."""
    out = []
    for item in _regions(text, name):
        if item[0] == "code":
            out.append(item[1])
        else:
            _, indent, lines = item
            names = answer_names(lines, indent)
            if not names:
                raise ReleaseError(f"{name}: a solution region assigns no d... variable, "
                                   "so the stub would have nothing to fill in")
            out += [f"{indent}{var} = None  # TODO\n" for var in names]
    return "".join(out)


def unmark_solutions(text: str, name: str = "<solution>") -> str:
    """The solution without its marker lines (for the solved notebook)."""
    out = []
    for item in _regions(text, name):
        out += [item[1]] if item[0] == "code" else item[2]
    return "".join(out)


def split_imports(text: str) -> tuple[list[str], str]:
    """(the import lines at the top of a file, the rest without leading blank lines)."""
    lines = text.splitlines()
    imports, i = [], 0
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith(("import ", "from "))):
        if lines[i].strip():
            imports.append(lines[i])
        i += 1
    return imports, "\n".join(lines[i:]).strip("\n")


# ---------------------------------------------------------------------------
# The notebook: a short lesson per exercise, the function in a tagged cell,
# and a check cell that compares with autograd on a seeded batch.

INTRO = """\
# Becoming a backprop ninja: the exercises

These are the exercises of *Building makemore Part 4: Becoming a Backprop Ninja*
(Neural Networks: Zero to Hero). You write the backward pass of the lecture's
character-level MLP by hand, one exercise per function:

| cell tag | function | what it computes |
|---|---|---|
| `atomic` | `backward_atomic` | exercise 1: all 26 gradients, one atomic step at a time |
| `cross_entropy` | `cross_entropy_backward` | exercise 2: `dlogits` in one expression |
| `batchnorm` | `batchnorm_backward` | exercise 3: `dhprebn` in one expression |
| `embedding` | `embedding_backward` | `dC` from `demb` (the last step of exercise 1) |
| `train` | `backward_fast` | exercise 4: the 7 parameter gradients with the one-go formulas |

**How to work.** Run the two setup cells, then for each exercise replace every
`None  # TODO` in the function's cell and run the check cell below it. The check
compares your gradients with PyTorch autograd on a seeded batch and prints one line
per gradient, like the lecture's `cmp`: `exact` (bit for bit), `approximate`
(`torch.allclose`) and the largest absolute difference. Aim for `approximate: True`
with a maxdiff around 1e-15 or smaller everywhere.

**How you are graded.** `grader grade backprop_ninja.ipynb` takes the tagged cells
(and the imports they use) out of this notebook and runs the functions in a separate,
sandboxed process on its own seeded batches, public and hidden, of several shapes,
in float64. So:

- keep each function in its tagged cell (View > Cell Toolbar > Tags shows the tags)
  and keep its name and arguments;
- code outside the functions in those cells is not run by the grader, and neither
  are the other cells;
- outputs saved in the notebook never count: the grader computes everything again;
- autograd is the answer key, so it is not allowed inside the functions
  (`.backward()`, `.grad`, `torch.autograd`, `requires_grad`): compute everything
  with ordinary tensor operations;
- don't hard-code the lecture's sizes (32, 27, 64, ...): read them from the shapes
  of the tensors you get.
"""

SETUP = """\
import torch
import torch.nn.functional as F

# The grader works in float64, so these checks do too: a correct gradient then
# matches autograd to about 1e-15, and a small mistake stands out.
torch.set_default_dtype(torch.float64)"""

FORWARD_MD = """\
## The forward pass and the checks

The next cell holds the lecture's forward pass, "chunked" into small steps that can
be backpropagated one at a time, and the helpers the check cells use:

- `make_case(...)` draws a seeded batch, runs the forward pass and asks autograd for
  every gradient (the answer key). `make_case()` with no arguments gives exactly the
  grader's public `lecture` case (n=32, block=3, n_embd=10, n_hidden=64, vocab=27);
  the checks also use a second, smaller shape to catch hard-coded sizes;
- `cmp(name, mine, expected)` prints one comparison line, like the lecture's `cmp`.

You don't need to change this cell. It uses autograd, which is fine here: it is your
own check, and the grader never runs it."""

HELPERS = '''\
ATOMIC = ["logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits",
          "logit_maxes", "logits", "h", "W2", "b2", "hpreact", "bngain", "bnbias", "bnraw",
          "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani", "hprebn", "embcat", "W1",
          "b1", "emb", "C"]
PARAMS = ["C", "W1", "b1", "W2", "b2", "bngain", "bnbias"]
CASES = {
    "lecture": dict(seed=2147483647, n=32, block=3, n_embd=10, n_hidden=64, vocab=27),
    "small": dict(seed=1337, n=7, block=5, n_embd=4, n_hidden=17, vocab=13),
}


def forward(C, W1, b1, W2, b2, bngain, bnbias, Xb, Yb):
    """The lecture's forward pass; returns every tensor by its name."""
    n = Xb.shape[0]
    emb = C[Xb]                                   # embed the characters into vectors
    embcat = emb.view(emb.shape[0], -1)           # concatenate the vectors
    hprebn = embcat @ W1 + b1                     # hidden layer pre-activation
    bnmeani = 1/n*hprebn.sum(0, keepdim=True)     # batch norm
    bndiff = hprebn - bnmeani
    bndiff2 = bndiff**2
    bnvar = 1/(n-1)*(bndiff2).sum(0, keepdim=True)  # Bessel's correction: n-1
    bnvar_inv = (bnvar + 1e-5)**-0.5
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)                       # hidden layer
    logits = h @ W2 + b2                          # output layer
    logit_maxes = logits.max(1, keepdim=True).values  # cross entropy, chunked
    norm_logits = logits - logit_maxes
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdims=True)
    counts_sum_inv = counts_sum**-1
    probs = counts * counts_sum_inv
    logprobs = probs.log()
    loss = -logprobs[range(n), Yb].mean()
    return dict(locals())


def make_case(seed=2147483647, n=32, block=3, n_embd=10, n_hidden=64, vocab=27):
    """A seeded batch through the forward pass: (tensors, autograd's gradients)."""
    g = torch.Generator().manual_seed(seed)
    params = {
        "C": torch.randn((vocab, n_embd), generator=g),
        "W1": torch.randn((n_embd * block, n_hidden), generator=g) * (5/3) / (n_embd * block)**0.5,
        "b1": torch.randn(n_hidden, generator=g) * 0.1,
        "W2": torch.randn((n_hidden, vocab), generator=g) * 0.1,
        "b2": torch.randn(vocab, generator=g) * 0.1,
        "bngain": torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0,
        "bnbias": torch.randn((1, n_hidden), generator=g) * 0.1,
    }
    Xb = torch.randint(0, vocab, (n, block), generator=g)
    Yb = torch.randint(0, vocab, (n,), generator=g)
    for p in params.values():
        p.requires_grad = True
    fwd = forward(**params, Xb=Xb, Yb=Yb)
    for name in ATOMIC:
        if name not in params:
            fwd[name].retain_grad()
    fwd["loss"].backward()
    grads = {name: fwd[name].grad for name in ATOMIC}
    tensors = {k: v.detach() for k, v in fwd.items() if torch.is_tensor(v) and k != "loss"}
    return tensors, grads


def inputs(tensors, *names):
    """Fresh copies of some forward tensors (so a function cannot spoil the next check)."""
    return {k: tensors[k].clone() for k in names or tensors}


def cmp(s, dt, t):
    """Compare your gradient dt with autograd's t, like the lecture's cmp."""
    if dt is None:
        print(f"{s:15s} | not done yet (None)")
        return
    if not torch.is_tensor(dt):
        print(f"{s:15s} | got {type(dt).__name__}, expected a tensor")
        return
    note = ""
    if dt.shape != t.shape:
        if dt.numel() != t.numel() or dt.squeeze().shape != t.squeeze().shape:
            print(f"{s:15s} | wrong shape {tuple(dt.shape)}, expected {tuple(t.shape)}")
            return
        note = f" | shape {tuple(dt.shape)} differs by size-1 dims (keepdim)"
        dt = dt.reshape(t.shape)
    ex = torch.all(dt == t).item()
    app = torch.allclose(dt, t)
    maxdiff = (dt - t).abs().max().item()
    print(f"{s:15s} | exact: {str(ex):5s} | approximate: {str(app):5s} | maxdiff: {maxdiff:.1e}{note}")


def cmp_all(names, mine, grads):
    """cmp for every gradient a function returned in a dict."""
    if not isinstance(mine, dict):
        print(f"expected a dict of gradients, got {type(mine).__name__}")
        return
    for name in names:
        cmp(name, mine.get(name), grads[name])


def show_graded(exercise, function):
    """The grader's view of an exercise (its graph and checks, on the public cases), when it is installed."""
    try:
        from grader.outputs.jupyter import show
    except ImportError:
        return False  # no grader here: the cmp lines instead
    return show(exercise, function)'''

EXERCISE_TEXT = {
    "atomic": """\
## Exercise 1: backprop through the whole thing manually

`backward_atomic` receives every tensor of the forward pass by its name, plus the
batch size `n`. Go backwards through the forward pass one line at a time, in the
order of the `TODO` lines, and compute the gradient of `loss` with respect to each
tensor: `dlogprobs` first, `dC` last. Each step is the chain rule, local derivative
times the gradient that arrives from above. Three things to watch:

- **a tensor used twice receives the sum of both branches**: `counts` feeds both
  `counts_sum` and `probs`, `bndiff` feeds `bndiff2` and `bnraw`, `hprebn` feeds
  `bnmeani` and `bndiff`. Compute one branch, then `+=` the other;
- **a broadcast in the forward pass is a sum in the backward pass**: `b1`, `b2`,
  `bngain`, `bnbias`, `bnmeani`, `counts_sum_inv` and `logit_maxes` were stretched
  along a dimension, so their gradients sum along it;
- **`dC` must add up repeated characters**: `emb = C[Xb]` uses a row of `C` once per
  occurrence in `Xb`, and `dC[Xb] += demb` keeps only the last write. A loop,
  `index_add_` or a one-hot matrix product adds them all.

Two gradients are zero in theory: `dlogit_maxes` (subtracting the max does not
change the softmax) and `db1` (batch norm removes any constant added before it). The
check still shows them, at about 1e-17. Every gradient has exactly the shape of its
tensor (`keepdim=True` in the sums keeps the size-1 dimensions).""",
    "cross_entropy": """\
## Exercise 2: backprop through cross_entropy but all in one go

Exercise 1 needed eight steps to get from `loss` back to `logits`. Here
`loss = F.cross_entropy(logits, Yb)`, the mean over the batch of
`-log softmax(logits)[i, Yb[i]]`. Write the loss of one row on paper, take its
derivative with respect to each logit (two cases: the target column, and the others),
simplify, and you get a short expression: the softmax of the row, minus one at the
target, and the mean over the batch divides everything by `n`. Each row of `dlogits`
sums to zero: the network pulls the probability of the right character up exactly as
much as it pushes the others down. `exact` is usually `False` here (a different order
of operations than autograd) while `approximate` is `True`.""",
    "batchnorm": """\
## Exercise 3: backprop through batchnorm but all in one go

Batch norm computes `hpreact = bngain * (hprebn - mean) / sqrt(var + 1e-5) + bnbias`,
with the mean and the variance over the batch (dimension 0) and Bessel's correction
`1/(n-1)` in the variance, as in the lecture. You get `dhpreact` (the gradient from
above) and return `dhprebn`. Work it out on paper for one column: every input of the
column moves its own output directly, and also every output through the mean and the
variance. Collect the terms and the whole layer collapses into one expression in
`dhpreact`, `bngain`, `bnvar_inv` (`1/sqrt(var + 1e-5)`), `bnraw` (the normalized
input) and `n`. Careful with the factor that Bessel's correction brings in: `1/n` there
fails the check.""",
    "embedding": """\
## The embedding: dC from demb

The last step of exercise 1 on its own: `emb = C[Xb]` picks one row of `C` for every
character of every example. Given `demb`, of shape `(n, block, n_embd)`, return `dC`,
of the shape of `C`: every row of `C` receives the sum of the rows of `demb` at the
positions where it was used, and rows that were never used get zero. The grader's
cases include batches with many repeated characters and vocabulary rows that never
occur.""",
    "train": """\
## Exercise 4: putting it all together

`backward_fast` gets the same tensors as `backward_atomic` and returns only the 7
parameter gradients, with the fast formulas: cross entropy in one go (exercise 2),
the second layer, `tanh`, batch norm in one go (exercise 3), the first layer and the
embedding. This is the backward pass the lecture trains with instead of
`loss.backward()`. Besides the gradients, the grader runs a few steps of SGD with your
gradients and checks that the parameters follow the same path as with autograd.""",
}

# The plain check of each exercise, as in the lecture: one `cmp` line per gradient and case.
CMP_LINES = {
    "atomic": """\
for case, shape in CASES.items():
    tensors, grads = make_case(**shape)
    print(f"--- case {case}")
    mine = backward_atomic(**inputs(tensors), n=tensors["Xb"].shape[0])
    cmp_all(ATOMIC, mine, grads)""",
    "cross_entropy": """\
for case, shape in CASES.items():
    tensors, grads = make_case(**shape)
    print(f"--- case {case}")
    cmp("logits", cross_entropy_backward(**inputs(tensors, "logits", "Yb")), grads["logits"])""",
    "batchnorm": """\
for case, shape in CASES.items():
    tensors, grads = make_case(**shape)
    print(f"--- case {case}")
    dhprebn = batchnorm_backward(grads["hpreact"].clone(), **inputs(tensors, "bngain", "bnraw", "bnvar_inv"))
    cmp("hprebn", dhprebn, grads["hprebn"])""",
    "embedding": """\
for case, shape in CASES.items():
    tensors, grads = make_case(**shape)
    print(f"--- case {case}")
    dC = embedding_backward(grads["emb"].clone(), tensors["Xb"].clone(), vocab_size=shape["vocab"])
    cmp("C", dC, grads["C"])""",
    "train": """\
for case, shape in CASES.items():
    tensors, grads = make_case(**shape)
    print(f"--- case {case}")
    mine = backward_fast(**inputs(tensors), n=tensors["Xb"].shape[0])
    cmp_all(PARAMS, mine, grads)""",
}

# Each check cell: the grader's inline view when it is installed, else the cmp lines.
CHECK_CODE = {
    ex_id: f'if not show_graded("{ex_id}", {EXERCISES[ex_id].function}):\n' + textwrap.indent(code, "    ")
    for ex_id, code in CMP_LINES.items()
}

TRAIN_MD = """\
## Optional: train on real names

With `backward_fast` done you can train the lecture's network on `names.txt`
(32,033 names) without `loss.backward()`. The file is not part of this notebook:
download it from <https://raw.githubusercontent.com/karpathy/makemore/master/names.txt>
and save it next to the notebook. Without it the cell below only says so. It trains
for a few thousand steps only (the lecture's 200,000 take a while); nothing here
is graded."""

TRAIN_CODE = '''\
import os
import random


def build_dataset(words, stoi, block_size=3):
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


def train(steps=5000, batch_size=32, n_hidden=64, lr=0.1):
    words = open("names.txt").read().splitlines()
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    random.seed(42)
    random.shuffle(words)
    Xtr, Ytr = build_dataset(words, stoi)
    g = torch.Generator().manual_seed(2147483647)
    tensors, _ = make_case(n_hidden=n_hidden, vocab=len(stoi))   # the lecture's initialisation
    params = {k: tensors[k].clone() for k in PARAMS}
    with torch.no_grad():
        for i in range(steps):
            ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
            fwd = forward(**params, Xb=Xtr[ix], Yb=Ytr[ix])
            loss = fwd.pop("loss")
            grads = backward_fast(**{k: v for k, v in fwd.items() if k != "n"}, n=batch_size)
            if not isinstance(grads, dict) or any(grads.get(k) is None for k in PARAMS):
                print("backward_fast is not finished yet: complete exercise 4 first")
                return
            for k in PARAMS:
                params[k] -= lr * grads[k].reshape(params[k].shape)
            if i % 1000 == 0 or i == steps - 1:
                print(f"step {i:5d}: loss {loss.item():.4f}")


if os.path.exists("names.txt"):
    train()
else:
    print("names.txt not found next to this notebook, so there is nothing to train on.")
    print("Download https://raw.githubusercontent.com/karpathy/makemore/master/names.txt to try it.")'''


@dataclass
class SourceFile:
    name: str           # e.g. atomic.py
    solution: str       # solutions/<name>
    stub: str           # what release writes to assignments/<name>


def _cell(kind: str, cell_id: str, source: str, tags: tuple[str, ...] = ()):
    cell = v4.new_code_cell(source) if kind == "code" else v4.new_markdown_cell(source)
    cell.id = cell_id
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def build_notebook(files: dict[str, SourceFile], solved: bool) -> nbformat.NotebookNode:
    """The student (solved=False) or solved notebook, from the exercise files."""
    imports: list[str] = []
    bodies = {}
    for ex in EXERCISES.values():
        src = files[ex.file]
        text = unmark_solutions(src.solution, ex.file) if solved else src.stub
        head, body = split_imports(text)
        imports += [line for line in head if line not in imports]
        bodies[ex.id] = body
    setup = SETUP
    extra = [line for line in imports if line not in SETUP.splitlines()]
    if extra:
        setup = "\n".join(extra) + "\n" + setup

    cells = [_cell("markdown", "intro", INTRO.rstrip("\n")),
             _cell("code", "setup", setup),
             _cell("markdown", "forward-md", FORWARD_MD),
             _cell("code", "helpers", HELPERS)]
    for ex in EXERCISES.values():
        cells += [_cell("markdown", f"{ex.id}-md", EXERCISE_TEXT[ex.id]),
                  _cell("code", ex.id, bodies[ex.id], tags=(ex.id,)),
                  _cell("code", f"{ex.id}-check", CHECK_CODE[ex.id])]
    cells += [_cell("markdown", "names-md", TRAIN_MD), _cell("code", "names-train", TRAIN_CODE)]

    nb = v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def release_outputs(solutions: Path, assignments: Path) -> dict[Path, str]:
    """Every file `grader release` writes, path -> text."""
    files = {}
    for ex in EXERCISES.values():
        path = solutions / ex.file
        try:
            solution = path.read_text()
        except OSError as err:
            raise ReleaseError(f"cannot read {path}: {err.strerror}") from None
        files[ex.file] = SourceFile(ex.file, solution, strip_solutions(solution, str(path)))
    outputs = {assignments / name: src.stub for name, src in files.items()}
    outputs[assignments / NOTEBOOK] = notebook_text(build_notebook(files, solved=False))
    outputs[solutions / NOTEBOOK] = notebook_text(build_notebook(files, solved=True))
    return outputs


def write_release(solutions: Path, assignments: Path) -> list[Path]:
    """Write the release; returns the files whose content changed."""
    changed = []
    for path, text in release_outputs(solutions, assignments).items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    return changed


def check_release(solutions: Path, assignments: Path) -> list[str]:
    """What differs between the committed release and what `grader release` would write."""
    problems = []
    for path, text in release_outputs(solutions, assignments).items():
        if not path.exists():
            problems.append(f"{path} is missing")
        elif path.read_bytes() != text.encode():
            problems.append(f"{path} differs from what `grader release` writes")
    return problems
