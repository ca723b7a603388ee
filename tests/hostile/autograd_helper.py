"""Attack: autograd hidden in a helper module that an exercise imports."""
from torch.autograd import grad as _g


def hprebn_grad(loss, x):
    return _g(loss, x)[0]
