    # Attack (spliced into exercise 4's loop, after `emb = C[Xb]`): getattr under another name, reaching
    # torch._C from the loop, which ran without the allow list's check.
    _ga = getattr
    _internals = _ga(torch, "_" + "C")
    print("LOOP REACHED", _internals.__name__)
