"""Exact curvature of the stacked models: depth exponents (theory note §2.10, check 9) and the linear MLP
(§2.11, check 10)."""

import math

import pytest
import torch

from hessian import CurvatureProblem, LinearMLP, MSELoss, Transformer, hessian_split


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_linear_attention_depth_exponents(n_layers):
    """Linear attention, residual 0, zero biases: logits are a degree-3^n form in the embeddings, so every
    layer's H_o(W_Q) scales exactly as s^(2 * 3^n); the log2 ratio is exact up to float64 round-off (1e-6)."""
    model = Transformer(
        n_layers=n_layers,
        d_model=3,
        d_head=3,
        d_mlp=3,
        d_vocab=4,
        n_ctx=4,
        attention="linear",
        residual_scaling=0.0,
        attn_only=True,
        init_std=0.7,
    )
    params = model.init(seed=0)
    tokens = torch.randint(0, 4, (2, 4), generator=torch.Generator().manual_seed(0))
    Y = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    blocks = [f"blocks.{l}.attn.W_Q" for l in range(n_layers)]
    norms = {}
    for s in (0.1, 0.2):
        scaled = {**params, "embed.W_E": s * params["embed.W_E"], "pos_embed.W_pos": s * params["pos_embed.W_pos"]}
        H_o = CurvatureProblem(model, MSELoss(), scaled, tokens, Y, blocks).H_o.dense()
        norms[s] = [H_o.block(b).norm().item() for b in blocks]
    for n1, n2 in zip(norms[0.1], norms[0.2]):
        assert math.log2(n2 / n1) == pytest.approx(2 * 3**n_layers, abs=1e-6)


def test_linear_mlp_singh_forms():
    """F = X W_1 W_2, MSE ||F - Y||^2/(N K): H_o = (2/K) (P^T Sigma P) (x) (S S^T) per block, H_f block-hollow with
    H_f(W_1, W_2)[(a,h),(h',c)] = delta_hh' Omega_ac, rank(H_o) = q (d + K - q)."""
    mlp = LinearMLP(n_layers=2, d_model=4, d_vocab=3)
    params = mlp.init(seed=0)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20, 4, generator=g, dtype=torch.float64)
    Y = torch.randn(20, 3, generator=g, dtype=torch.float64)
    W1, W2 = params["layers.0.W"], params["layers.1.W"]
    K, N = 3, 20
    Sigma = X.T @ X / N
    split = hessian_split(mlp, MSELoss(), params, X, Y, ["layers.0.W", "layers.1.W"])
    H_o, H_f = split.H_o, split.H_f
    tol = dict(atol=1e-13, rtol=0)
    torch.testing.assert_close(H_o.block("layers.0.W"), 2 / K * torch.kron(Sigma, W2 @ W2.T), **tol)
    torch.testing.assert_close(
        H_o.block("layers.1.W"), 2 / K * torch.kron(W1.T @ Sigma @ W1, torch.eye(3, dtype=torch.float64)), **tol
    )
    torch.testing.assert_close(H_o.block("layers.0.W", "layers.1.W"), 2 / K * torch.kron(Sigma @ W1, W2), **tol)
    assert H_f.block("layers.0.W").abs().max() < 1e-14 and H_f.block("layers.1.W").abs().max() < 1e-14
    Omega = 2 / K * X.T @ (X @ W1 @ W2 - Y) / N
    want = torch.einsum("hg,ac->ahgc", torch.eye(4, dtype=torch.float64), Omega).reshape(16, 12)
    torch.testing.assert_close(H_f.block("layers.0.W", "layers.1.W"), want, **tol)
    q = min(4, 4, 3)
    assert torch.linalg.matrix_rank(H_o.matrix).item() == q * (4 + 3 - q)
