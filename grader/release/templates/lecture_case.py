CASES = {
    "lecture": dict(seed=2147483647, LECTURE_SHAPE_ARGS=None),
    "small": dict(seed=1337, n=7, block=5, n_embd=4, n_hidden=17, vocab=13),
}


def make_case(seed=2147483647, LECTURE_SHAPE_ARGS=None):
    """A seeded batch through the forward pass: (tensors, autograd's gradients)."""
    g = torch.Generator().manual_seed(seed)
    params = init_params(g, vocab=vocab, block=block, n_embd=n_embd, n_hidden=n_hidden,
                         dtype=torch.get_default_dtype())
    Xb = torch.randint(0, vocab, (n, block), generator=g)
    Yb = torch.randint(0, vocab, (n,), generator=g)
    for p in params.values():
        p.requires_grad = True
    fwd = forward(params, Xb, Yb)
    for name in ATOMIC:
        if name not in params:
            fwd[name].retain_grad()
    fwd["loss"].backward()
    grads = {name: fwd[name].grad for name in ATOMIC}
    tensors = {k: v.detach() for k, v in fwd.items() if k != "loss"}
    return tensors, grads
