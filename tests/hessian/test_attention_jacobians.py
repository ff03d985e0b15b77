"""Closed-form Jacobians of single-head attention against torch.func.jacrev in float64 (atol 1e-12)."""

import math

import pytest
import torch
from torch.func import jacrev

from hessian.closed_form.attention_jacobians import attention_jacobians
from hessian.jacobians import jacobian
from hessian.models import SelfAttention

NAMES = ("X", "W_Q", "W_K", "W_V")


def draw(L, d, dK, dV, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(*s, generator=g, dtype=torch.float64) for s in ((L, d), (d, dK), (d, dK), (d, dV)))


def layer_fn(beta, causal, linear=False):
    """F = pattern(beta X W_Q W_K^T X^T) X W_V written directly (no library code)."""

    def F(X, W_Q, W_K, W_V):
        T = beta * X @ W_Q @ W_K.T @ X.T
        keep = torch.ones_like(T, dtype=torch.bool).tril() if causal else torch.ones_like(T, dtype=torch.bool)
        A = (
            torch.where(keep, T, torch.zeros_like(T))
            if linear
            else torch.softmax(T.masked_fill(~keep, -math.inf), dim=-1)
        )
        return A @ X @ W_V

    return F


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("sizes", [(4, 3, 2, 3), (5, 3, 4, 2), (6, 4, 1, 5)])  # (L, d, d_K, d_V), non-square
@pytest.mark.parametrize("scale", [None, 0.3])
def test_matches_jacrev(causal, sizes, scale):
    args = draw(*sizes, seed=sum(sizes))
    L, _, dK, dV = sizes
    beta = 1 / math.sqrt(dK) if scale is None else scale
    ref = jacrev(layer_fn(beta, causal), argnums=(0, 1, 2, 3))(*args)
    J = attention_jacobians(*args, scale=scale, causal=causal)
    assert set(J) == set(NAMES)
    for name, r, arg in zip(NAMES, ref, args):
        assert J[name].shape == (L * dV, arg.numel()) and J[name].dtype == torch.float64
        torch.testing.assert_close(J[name], r.reshape(L * dV, arg.numel()), atol=1e-12, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_matches_jacrev(causal):
    args = draw(5, 3, 2, 4, seed=7)
    ref = jacrev(layer_fn(0.5, causal, linear=True), argnums=(0, 1, 2, 3))(*args)
    J = attention_jacobians(*args, scale=0.5, causal=causal, attention="linear")
    for name, r in zip(NAMES, ref):
        torch.testing.assert_close(J[name], r.reshape(J[name].shape), atol=1e-12, rtol=0)


def test_large_scores_and_float32_inputs():
    """Nearly saturated softmax (scores ~ 50) and float32 inputs (cast to float64 before any arithmetic)."""
    args = draw(6, 3, 3, 3, seed=3, scale=3.0)
    ref = jacrev(layer_fn(1 / math.sqrt(3), False), argnums=(0, 1, 2, 3))(*args)
    J = attention_jacobians(*(a.float() for a in args))
    ref32 = jacrev(layer_fn(1 / math.sqrt(3), False), argnums=(0, 1, 2, 3))(*(a.float().double() for a in args))
    for name, r, r32 in zip(NAMES, ref, ref32):
        torch.testing.assert_close(J[name], r32.reshape(J[name].shape), atol=1e-11, rtol=0)
        assert torch.isfinite(r).all()


def test_kronecker_structure():
    """dF/dW_V = (A X) (x) I; the X block splits into the value term A (x) W_V^T plus a score term that
    vanishes for W_Q = 0 (uniform attention); row blocks of dF/dW_Q are x_i^T (x) (...) (theory note §2.1)."""
    X, W_Q, W_K, W_V = draw(4, 3, 2, 3, seed=11)
    J = attention_jacobians(X, W_Q, W_K, W_V)
    A = torch.softmax(X @ W_Q @ W_K.T @ X.T / math.sqrt(2), dim=-1)
    torch.testing.assert_close(J["W_V"], torch.kron(A @ X, torch.eye(3, dtype=torch.float64)), atol=1e-14, rtol=0)
    J0 = attention_jacobians(X, torch.zeros_like(W_Q), W_K, W_V)
    torch.testing.assert_close(
        J0["X"], torch.kron(torch.full((4, 4), 0.25, dtype=torch.float64), W_V.T.contiguous()), atol=1e-14, rtol=0
    )
    # row block i (3 rows) of dF/dW_Q has rank 1 in the (a, c) split: entries beta x_ia B_fc
    block = J["W_Q"][3:6].reshape(3, 3, 2)  # [f, a, c]
    assert torch.linalg.matrix_rank(block.permute(1, 0, 2).reshape(3, 6)) == 1


def test_agrees_with_dense_jacobian_of_the_model():
    """The repository's SelfAttention (one head, TransformerLens storage) through hessian.jacobian."""
    layer = SelfAttention(d_model=4, d_k=3, d_v=2, causal=True)
    params = layer.init(seed=5, std=1.0)
    X = torch.randn(5, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    Jm = jacobian(layer, params, X, wrt=("X", "W_Q", "W_K", "W_V"))
    J = attention_jacobians(X, params["W_Q"][0], params["W_K"][0], params["W_V"][0], causal=True)
    for name in NAMES:
        torch.testing.assert_close(J[name], Jm.block(name), atol=1e-12, rtol=0)


def test_bad_inputs():
    X, W_Q, W_K, W_V = draw(4, 3, 2, 3)
    with pytest.raises(ValueError, match=r"X must have shape \(\*, \*\), got \(4, 3, 1\)"):
        attention_jacobians(X[..., None], W_Q, W_K, W_V)
    with pytest.raises(ValueError, match=r"W_Q must have shape \(3, \*\)"):
        attention_jacobians(X, W_Q[:2], W_K, W_V)
    with pytest.raises(ValueError, match=r"W_K must have shape \(3, 2\), got \(3, 1\)"):
        attention_jacobians(X, W_Q, W_K[:, :1], W_V)
    with pytest.raises(ValueError, match=r"W_V must have shape \(3, \*\)"):
        attention_jacobians(X, W_Q, W_K, W_V.T[:2])
    with pytest.raises(ValueError, match="W_V must be finite"):
        attention_jacobians(X, W_Q, W_K, W_V.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="scale must be a finite float"):
        attention_jacobians(X, W_Q, W_K, W_V, scale=float("inf"))
    with pytest.raises(ValueError, match="attention must be one of"):
        attention_jacobians(X, W_Q, W_K, W_V, attention="relu")
    with pytest.raises(TypeError, match="X must be a torch.Tensor"):
        attention_jacobians(X.numpy(), W_Q, W_K, W_V)
