"""Static scan of a submission: an allow list of what a hand-written backward pass needs.

Autograd computes the grader's answers, so a submission may not use it, nor
anything that reaches around a check: computed attribute access, dunders,
torch's internals and kernels, the interpreter's namespaces, imports beyond a
few. A deny list of spellings is beaten by aliasing, so this reads the source
with `ast` (nothing is run) and lets through only:
- imports of torch, torch.nn.functional (and torch.nn, linalg, special, fft),
  math, numpy, a few pure standard modules, and the submission's own files;
- attributes of those modules that compute forward values (grader.submission.integrity.allowlist),
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

from grader.submission.integrity.driver import scan, scan_train
from grader.submission.integrity.rules import RULES, Finding, check_allow

__all__ = ["RULES", "Finding", "check_allow", "scan", "scan_train"]
