"""Exact block norms of the growth experiments against dense Hessians (hessian_split) on tiny models.

Reference: the full (P, P) Hessian, Gauss-Newton and functional parts from autograd in float64 over the
full model (no read-out) with the position-selecting losses; the fast path uses the read-out model and the
Kronecker-sum identity. Both are exact, so they agree to rounding: rtol 1e-9 (observed ~1e-15), with an
absolute floor of 1e-9 times the largest norm for blocks that vanish identically.
"""

import dataclasses

import numpy as np
import pytest
import torch

from hessian import CrossEntropyLoss, LinearMLP, MSELoss, Transformer, hessian_split
from hessian.addition import addition_data
from hessian.block_norms import (
    hutchpp_split_norms,
    kron_sum_matrix,
    kron_sum_squared_frobenius,
    mlp_layer_norms,
    transformer_last_layer_norms,
)


def dense_norms(model, loss, params, tokens, name):
    S = hessian_split(model, loss, params, tokens, tokens, [name])
    return np.array([float(M.matrix.norm()) for M in (S.H, S.H_o, S.H_f)])


def losses(kind, tokens):
    if kind == "ce":
        return CrossEntropyLoss(positions=(11, 17), target_shift=1), lambda o: CrossEntropyLoss()(o, tokens[:, 12:18])
    return MSELoss(reduction="sum", positions=(11, 17)), lambda o: MSELoss(reduction="sum")(o, tokens[:, 11:17])


def test_kron_sum_identity(rng):
    X = torch.as_tensor(rng.standard_normal((7, 3)))
    C = torch.as_tensor(rng.standard_normal((7, 4, 4)))
    dense = kron_sum_matrix(X, C)
    assert torch.allclose(kron_sum_squared_frobenius(X, C), (dense**2).sum(), rtol=1e-12)
    # row-major vec: entry ((a, c), (b, e)) = sum_t x_ta x_tb C_t[c, e]
    assert torch.allclose(dense[1 * 4 + 2, 2 * 4 + 3], (X[:, 1] * X[:, 2] * C[:, 2, 3]).sum())


@pytest.mark.parametrize(
    "kwargs, loss_kind",
    [
        (dict(), "ce"),
        (dict(), "mse"),
        (dict(layer_norm=True), "ce"),  # not piecewise linear: the Hessian-vector-product path
        (dict(attention="linear", residual_scaling=0.0), "mse"),
        (dict(n_layers=2, residual_scaling=0.5), "ce"),
    ],
)
def test_last_layer_norms_equal_dense(kwargs, loss_kind):
    tokens = addition_data(4, seed=0)[0]
    model = Transformer(d_model=6, d_head=4, d_mlp=8, **kwargs)
    params = model.init(seed=3)
    g = torch.Generator().manual_seed(0)
    # embeddings of std 1 so that every block is O(1) and the softmax is far from uniform
    params["embed.W_E"] = torch.randn(12, 6, generator=g, dtype=torch.float64)
    params["pos_embed.W_pos"] = torch.randn(18, 6, generator=g, dtype=torch.float64)
    full_loss, short_loss = losses(loss_kind, tokens)
    got = transformer_last_layer_norms(dataclasses.replace(model, readout=(11, 17)), params, tokens, short_loss)
    last = model.n_layers - 1
    for block in ("Q", "V"):
        want = dense_norms(model, full_loss, params, tokens, f"blocks.{last}.attn.W_{block}")
        np.testing.assert_allclose(got[block].value, want, rtol=1e-9, atol=1e-9 * want.max())
        assert np.all(got[block].stderr == 0)


def test_last_layer_rejects_models_without_readout():
    model = Transformer(d_model=4, d_head=4, d_mlp=4)
    tokens = addition_data(2, seed=0)[0]
    with pytest.raises(ValueError, match="readout"):
        transformer_last_layer_norms(model, model.init(seed=0), tokens, lambda o: o.sum())


def test_mlp_norms_equal_dense():
    tokens = addition_data(5, seed=1)[0]
    mlp = LinearMLP(n_layers=3, d_model=5)
    params = mlp.init(seed=0)
    full_loss, short_loss = losses("mse", tokens)
    got = mlp_layer_norms(mlp, params, tokens[:, 11:17], short_loss)
    for i in range(3):
        want = dense_norms(mlp, full_loss, params, tokens, f"layers.{i}.W")
        np.testing.assert_allclose(got[i].value, want, rtol=1e-9, atol=1e-9 * want.max())


def test_hutchpp_exact_when_the_sketch_spans_the_range(rng):
    # rank-3 H and H_o in dimension 40: a sketch of 3 columns each captures both ranges exactly
    n = 40
    U, W = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
    H, G = torch.as_tensor(U @ np.diag([3.0, -1.0, 0.5]) @ U.T), torch.as_tensor(W @ W.T)
    res = hutchpp_split_norms(lambda V: V @ H, lambda V: V @ G, n, sketch=3, probes=4, seed=0, dtype=torch.float64)
    want = np.array([float(torch.linalg.norm(M)) for M in (H, G, H - G)])
    np.testing.assert_allclose(res.value, want, rtol=1e-10)
    assert np.all(res.stderr < 1e-8 * want)


def test_hutchpp_unbiased_within_its_standard_error(rng):
    # full-rank block: the sketch cannot capture it; over 20 independent seeds the estimates of ||B||_F^2
    # scatter around the truth with their own standard errors, so the z-scores have mean ~0 and the
    # pooled mean lies within 4 standard errors (a false failure has probability < 1e-4)
    n = 30
    A = rng.standard_normal((n, n))
    H, G = torch.as_tensor(A + A.T), torch.as_tensor(A @ A.T / n)
    want = np.array([float(torch.linalg.norm(M)) for M in (H, G, H - G)])
    runs = [
        hutchpp_split_norms(lambda V: V @ H, lambda V: V @ G, n, sketch=2, probes=20, seed=s, dtype=torch.float64)
        for s in range(20)
    ]
    sq = np.array([r.value**2 for r in runs])
    se_sq = np.array([2 * r.value * r.stderr for r in runs])
    pooled_se = np.sqrt((se_sq**2).sum(0)) / len(runs)
    assert np.all(np.abs(sq.mean(0) - want**2) < 4 * pooled_se)
