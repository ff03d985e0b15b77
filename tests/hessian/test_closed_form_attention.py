"""Theorems A and B (theory note §2.2-2.3, checks 1-3, 8): closed forms equal autograd in float64.

Tolerance 1e-10 absolute on entries of O(1)-O(100) (the issue's bound); observed <= 1e-13.
"""

import itertools

import pytest
import torch

from hessian import CrossEntropyLoss, MSELoss, SelfAttention, hessian_split
from hessian.closed_form import attention_quantities, functional_blocks, hessian_blocks, outer_product_blocks

TOL = 1e-10


def data(seed=0, L=4, d=3, d_v=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(L, d, generator=g, dtype=torch.float64)
    Y = torch.randn(L, d_v, generator=g, dtype=torch.float64)
    targets = torch.randint(0, d_v, (L,), generator=g)
    return X, Y, targets


def weights(params):
    return params["W_Q"][0], params["W_K"][0], params["W_V"][0]


@pytest.mark.parametrize(
    "attention, causal, loss", list(itertools.product(["softmax", "linear"], [False, True], ["mse", "cross_entropy"]))
)
def test_blocks_equal_autograd(attention, causal, loss):
    layer = SelfAttention(d_model=3, d_k=2, d_v=3, attention=attention, causal=causal)
    params = layer.init(seed=1, std=1.0)
    X, Y, targets = data()
    target, loss_fn = (Y, MSELoss()) if loss == "mse" else (targets, CrossEntropyLoss())
    split = hessian_split(layer, loss_fn, params, X, target)
    kw = dict(loss=loss, attention=attention, causal=causal)
    H_o = outer_product_blocks(X, target, *weights(params), **kw)
    H_f = functional_blocks(X, target, *weights(params), **kw)
    H = hessian_blocks(X, target, *weights(params), **kw)
    torch.testing.assert_close(H_o.matrix, split.H_o.matrix, atol=TOL, rtol=0)
    torch.testing.assert_close(H_f.matrix, split.H_f.matrix, atol=TOL, rtol=0)
    torch.testing.assert_close(H.matrix, split.H.matrix, atol=TOL, rtol=0)
    assert H_f.block("W_V").abs().max() == 0
    assert H_o.blocks[("W_K", "W_Q")].equal(H_o.blocks[("W_Q", "W_K")].T)


def test_explicit_beta_and_rectangular_value():
    layer = SelfAttention(d_model=3, d_k=2, d_v=4, beta=0.3)
    params = layer.init(seed=5, std=1.5)
    X, Y, _ = data(seed=2, L=5, d_v=4)
    split = hessian_split(layer, MSELoss(), params, X, Y)
    H = hessian_blocks(X, Y, *weights(params), beta=0.3)
    torch.testing.assert_close(H.matrix, split.H.matrix, atol=TOL, rtol=0)


def test_moments():
    """Check 3: M2_i as a centred sum equals X^T J_i X; dA/dT equals autograd's row-softmax Jacobian."""
    layer = SelfAttention(d_model=3, d_k=2, d_v=3)
    params = layer.init(seed=1, std=1.0)
    X, Y, _ = data()
    qt = attention_quantities(X, Y, *weights(params))
    for i in range(4):
        D = X - qt.m[i]
        torch.testing.assert_close(qt.M2[i], (qt.A[i, :, None] * D).T @ D, atol=1e-14, rtol=0)
    scores = X @ params["W_Q"][0] @ params["W_K"][0].T @ X.T * qt.beta
    for i in range(4):
        J = torch.func.jacrev(lambda t: torch.softmax(t, -1))(scores[i])
        torch.testing.assert_close(qt.J[i], J, atol=1e-14, rtol=0)


def test_clustered_tokens_kill_query_key_curvature():
    """Check 8: identical tokens: every Q and K block of H_o and H_f vanishes, H_o(V,V) does not."""
    layer = SelfAttention(d_model=3, d_k=2, d_v=3)
    params = layer.init(seed=1, std=1.0)
    _, Y, _ = data()
    X = torch.tensor([[0.3, -1.2, 0.8]], dtype=torch.float64).expand(4, 3).clone()
    H_o = outer_product_blocks(X, Y, *weights(params))
    H_f = functional_blocks(X, Y, *weights(params))
    for a in ("W_Q", "W_K"):
        for b in ("W_Q", "W_K", "W_V"):
            assert H_o.block(a, b).abs().max() < 1e-14 and H_f.block(a, b).abs().max() < 1e-14
    assert H_o.block("W_V").abs().max() > 0.1
    split = hessian_split(layer, MSELoss(), params, X, Y)
    assert split.H.matrix[:12].abs().max() < 1e-14


def test_bad_closed_form_inputs():
    X, Y, _ = data()
    W = torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"W_K must have shape \(3, 2\)"):
        outer_product_blocks(X, Y, W, torch.ones(3, 3, dtype=torch.float64), torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"Y must have shape \(4, 3\)"):
        outer_product_blocks(X, Y[:, :2], W, W, torch.ones(3, 3))
    with pytest.raises(ValueError, match="loss must be"):
        outer_product_blocks(X, Y, W, W, torch.ones(3, 3), loss="hinge")
    with pytest.raises(ValueError, match="X must be finite"):
        functional_blocks(X * float("nan"), Y, W, W, torch.ones(3, 3))
