for case, shape in CASES.items():
    tensors, grads = make_case(**shape)
    print(f"--- case {case}")
    dC = embedding_backward(grads["emb"].clone(), tensors["Xb"].clone(), vocab_size=shape["vocab"])
    cmp("C", dC, grads["C"])
