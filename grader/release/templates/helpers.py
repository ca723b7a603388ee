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
    return show(exercise, function)
