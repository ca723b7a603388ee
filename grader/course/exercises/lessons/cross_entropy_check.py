for case, shape in CASES.items():
    tensors, grads = make_case(**shape)
    print(f"--- case {case}")
    cmp("logits", cross_entropy_backward(**inputs(tensors, "logits", "Yb")), grads["logits"])
