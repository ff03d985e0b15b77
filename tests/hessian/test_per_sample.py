"""Per-sample Hessians and the running means of the empirical loss (theory note §4.5, check 14).

References: ``CurvatureProblem(...).H.dense()`` per sample (exact autograd), cumulative means computed directly (exact
identities, 1e-12), and the Taylor bound on realisable data. The 1/k rate is checked with the study's fit in
tests/simulations/test_dataset_convergence.py.
"""

import numpy as np
import pytest
import torch

from hessian import CrossEntropyLoss, CurvatureProblem, MSELoss, SelfAttention, Transformer
from hessian.addition import addition_data, answer_positions
from hessian.per_sample import per_sample_hessians, running_differences


def attention_samples(N, seed=0):
    g = torch.Generator().manual_seed(seed)
    layer = SelfAttention(d_model=3, d_k=2, d_v=3)
    params = layer.init(seed=1, std=1.0)
    X = torch.randn(N, 4, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(N, 4, 3, generator=g, dtype=torch.float64)
    return layer, params, X, Y


def test_per_sample_hessians_equal_dense():
    a0, a1 = answer_positions(5)
    model = Transformer(d_model=4, d_head=4, d_mlp=8, layer_norm=True, readout=(a0 - 1, a1 - 1))
    blocks = ["blocks.0.attn.W_V", "blocks.0.ln2.w", "blocks.0.ln2.b"]
    params = model.init(seed=0)
    tokens = addition_data(1, num_batches=3, seed=0)[:, 0]
    losses, H = per_sample_hessians(model, CrossEntropyLoss(), params, tokens, tokens[:, a0:a1], blocks)
    assert H.shape == (3, 16 + 8, 16 + 8)
    for i in range(3):
        ref = CurvatureProblem(
            model, CrossEntropyLoss(), params, tokens[i : i + 1], tokens[i : i + 1, a0:a1], blocks
        ).H.dense()
        torch.testing.assert_close(H[i], ref.matrix, rtol=0, atol=1e-12)
        assert (
            abs(
                float(losses[i]) - float(CrossEntropyLoss()(model(params, tokens[i : i + 1]), tokens[i : i + 1, a0:a1]))
            )
            < 1e-14
        )


def test_running_differences_equal_direct_cumulative_means():
    layer, params, X, Y = attention_samples(600)
    losses, H = per_sample_hessians(layer, MSELoss(), params, X, Y, ["W_Q", "W_V"])
    # two chunks continue the running mean exactly like one pass
    dL1, dH1, L1, H1 = running_differences(losses[:250], H[:250])
    dL2, dH2, L2, H2 = running_differences(losses[250:], H[250:], k0=250, L_prev=L1, H_prev=H1)
    dL, dH = np.concatenate([dL1, dL2]), np.concatenate([dH1, dH2])
    # direct cumulative means L_k, H_k (k = 1..N)
    k = torch.arange(1, 601, dtype=torch.float64)
    Lk = torch.cumsum(losses, 0) / k
    Hk = torch.cumsum(H, 0) / k[:, None, None]
    np.testing.assert_allclose(dL[1:], (Lk[1:] - Lk[:-1]).abs().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dH[1:], torch.linalg.matrix_norm(Hk[1:] - Hk[:-1]).numpy(), rtol=0, atol=1e-12)
    assert np.isnan(dL[0]) and abs(L2 - float(Lk[-1])) < 1e-12 and float((H2 - Hk[-1]).abs().max()) < 1e-12


def test_taylor_bound_on_realisable_data():
    """Targets made by the model at w*: l_i(w*) = 0, grad l_i(w*) = 0, so |L_{k+1}(w) - L_k(w)| <= M |dw|^2 / (k+1)."""
    layer, params, X, _ = attention_samples(200, seed=2)
    with torch.no_grad():
        Y = layer(params, X)  # realisable: every l_i(w*) = 0
    losses_star, H_star = per_sample_hessians(layer, MSELoss(), params, X, Y, ["W_Q", "W_K", "W_V"])
    assert float(losses_star.abs().max()) < 1e-28
    M = float(torch.linalg.matrix_norm(H_star, ord=2).max())
    g = torch.Generator().manual_seed(3)
    moved = {}
    for name, value in params.items():
        moved[name] = value + torch.randn(value.shape, generator=g, dtype=torch.float64)
    delta = torch.cat([(moved[n] - params[n]).reshape(-1) for n in ("W_Q", "W_K", "W_V")])
    scale = 1e-3 / float(delta.norm())
    moved = {n: params[n] + scale * (moved[n] - params[n]) for n in params}
    with torch.no_grad():
        losses = torch.stack([MSELoss()(layer(moved, X[i]), Y[i]) for i in range(len(X))])
    dL, _, _, _ = running_differences(losses, torch.zeros(len(X), 1, 1, dtype=torch.float64))
    k = np.arange(len(X))
    bound = M * 1e-6 / (k + 1)
    assert np.all(dL[1:] <= (1 + 1e-2) * bound[1:])


def test_guards():
    layer, params, X, Y = attention_samples(3)
    with pytest.raises(ValueError, match="same number n >= 1 of samples"):
        per_sample_hessians(layer, MSELoss(), params, X, Y[:2], ["W_V"])
    with pytest.raises(ValueError, match="no parameter named"):
        per_sample_hessians(layer, MSELoss(), params, X, Y, ["W_X"])
