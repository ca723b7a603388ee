for case, shape in CASES.items():
    tensors, grads = make_case(**shape)
    print(f"--- case {case}")
    mine = backward_atomic(**inputs(tensors), n=tensors["Xb"].shape[0])
    cmp_all(ATOMIC, mine, grads)
