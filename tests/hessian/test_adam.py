"""hessian.adam against torch.optim.Adam (same constants, float64: 1e-13)."""

import torch

from hessian.adam import adam_step


def test_adam_matches_torch_optim():
    g = torch.Generator().manual_seed(0)
    params = {
        "a": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "b": torch.randn(4, generator=g, dtype=torch.float64),
    }
    ref = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.Adam(ref.values(), lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v = {k: torch.zeros_like(p) for k, p in params.items()}
    for t in range(1, 6):
        grads = {k: torch.randn(p.shape, generator=g, dtype=torch.float64) for k, p in params.items()}
        for k, p in ref.items():
            p.grad = grads[k].clone()
        opt.step()
        adam_step(params, grads, m, v, t, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    for k in params:
        torch.testing.assert_close(params[k], ref[k].detach(), rtol=0, atol=1e-13)
