"""Attack: autograd inside exec'd, compiled and imported-by-importlib code."""
import importlib

ag = importlib.import_module("torch.autograd")
code = compile("import torch\nwith torch.enable_grad(): pass", "<x>", "exec")


def backward_fast(**fwd):
    exec(code)
    return {}
