for B, T, C in [(2, 3, 8), (4, 1, 5)]:
    g = torch.Generator().manual_seed(1000 * B + 100 * T + C)
    x = torch.randn(B, T, C, generator=g) * 2.0
    gamma = (1.0 + 0.3 * torch.randn(C, generator=g)).requires_grad_()
    beta = (0.3 * torch.randn(C, generator=g)).requires_grad_()
    dout = torch.randn(B, T, C, generator=g)
    x.requires_grad_()
    mean = x.mean(-1, keepdim=True)
    rstd = (((x - mean) ** 2).mean(-1, keepdim=True) + 1e-5) ** -0.5
    out = gamma * (x - mean) * rstd + beta
    out.backward(dout)
    print(f"--- B={B} T={T} C={C}")
    mine = layernorm_backward(dout, x.detach(), gamma.detach(), mean.detach(), rstd.detach())
    cmp_all(("x", "gamma", "beta"), mine, {"x": x.grad, "gamma": gamma.grad, "beta": beta.grad})
