for case, shape in CASES.items():
    tensors, grads = make_case(**shape)
    print(f"--- case {case}")
    dhprebn = batchnorm_backward(grads["hpreact"].clone(), **inputs(tensors, "bngain", "bnraw", "bnvar_inv"))
    cmp("hprebn", dhprebn, grads["hprebn"])
