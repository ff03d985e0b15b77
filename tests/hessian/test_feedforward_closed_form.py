"""Feed-forward closed forms (theory note §4.3, check 12) against the autograd Hessian of the FFN loss in float64.

The reference is torch.func.hessian of ``l(relu/gelu(Y W_1 + b_1) W_2 + b_2)`` written out here with torch's
own activations; tolerance 1e-12 absolute (entries O(1); the issue's bound is 1e-10).
"""

import pytest
import torch
from torch.func import grad, hessian, jacrev

from hessian.closed_form import activation_derivatives, feedforward_blocks

TOL = 1e-12
ACT = {"relu": torch.relu, "gelu": torch.nn.functional.gelu}


def problem(seed=0, L=3, d=3, m=4, K=3):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return r(L, d), r(d, m), 0.3 * r(m), r(m, K), r(K), torch.randint(0, K, (L,), generator=g)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_blocks_equal_autograd(activation):
    Y, W_1, b_1, W_2, b_2, targets = problem()
    L, d = Y.shape
    m, K = W_2.shape
    phi = ACT[activation]
    assert (Y @ W_1 + b_1).abs().min() > 1e-3  # ReLU is twice differentiable here

    def loss(F):  # cross-entropy per token: a loss with a non-trivial Lam
        return -torch.log_softmax(F, -1).gather(-1, targets[:, None]).mean()

    sizes = [d * m, m, m * K, K]

    def ffn(v):
        a, b, c, e = v.split(sizes)
        return phi(Y @ a.reshape(d, m) + b) @ c.reshape(m, K) + e

    v0 = torch.cat([W_1.reshape(-1), b_1, W_2.reshape(-1), b_2])
    H_ref = hessian(lambda v: loss(ffn(v)))(v0)
    J = jacrev(lambda v: ffn(v).reshape(-1))(v0)
    F = ffn(v0)
    Lam_full = hessian(lambda f: loss(f.reshape(L, K)))(F.reshape(-1))
    H_o_ref = J.T @ Lam_full @ J
    G = grad(loss)(F)
    Lam = Lam_full.reshape(L, K, L, K)[torch.arange(L), :, torch.arange(L), :]
    split = feedforward_blocks(Y, W_1, b_1, W_2, b_2, G, Lam, activation=activation)
    torch.testing.assert_close(split.H.matrix, H_ref, rtol=0, atol=TOL)
    torch.testing.assert_close(split.H_o.matrix, H_o_ref, rtol=0, atol=TOL)
    torch.testing.assert_close(split.H_f.matrix, H_ref - H_o_ref, rtol=0, atol=TOL)
    # the full (L, K, L, K) form of Lam gives the same matrix
    full = feedforward_blocks(Y, W_1, b_1, W_2, b_2, G, Lam_full.reshape(L, K, L, K), activation=activation)
    torch.testing.assert_close(full.H.matrix, split.H.matrix, rtol=0, atol=1e-14)
    # structural zeros of H_f: W_2 enters linearly, b_2 additively
    for a, c in [("W_2", "W_2"), ("b_2", "b_2"), ("b_2", "W_1"), ("b_2", "b_1"), ("b_2", "W_2")]:
        assert split.H_f.block(a, c).abs().max() == 0
    if activation == "relu":  # phi'' = 0: only the W_1-W_2 and b_1-W_2 couplings remain in H_f
        for a, c in [("W_1", "W_1"), ("W_1", "b_1"), ("b_1", "b_1")]:
            assert split.H_f.block(a, c).abs().max() == 0
            assert H_ref[: d * m + m, : d * m + m].sub(H_o_ref[: d * m + m, : d * m + m]).abs().max() < TOL
        assert split.H_f.block("W_1", "W_2").abs().max() > 1e-3
    else:
        assert split.H_f.block("W_1", "W_1").abs().max() > 1e-3


def test_gelu_derivatives_match_autograd():
    h = torch.linspace(-4, 4, 41, dtype=torch.float64)
    phi, d1, d2 = activation_derivatives(h, "gelu")
    gelu = torch.nn.functional.gelu
    torch.testing.assert_close(phi, gelu(h), rtol=0, atol=1e-15)
    torch.testing.assert_close(d1, torch.vmap(grad(gelu))(h), rtol=0, atol=1e-14)
    torch.testing.assert_close(d2, torch.vmap(grad(grad(gelu)))(h), rtol=0, atol=1e-14)


def test_guards():
    Y, W_1, b_1, W_2, b_2, _ = problem()
    G, Lam = torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, 3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="activation must be one of"):
        feedforward_blocks(Y, W_1, b_1, W_2, b_2, G, Lam, activation="tanh")
    with pytest.raises(ValueError, match=r"W_1 must have shape \(3, m\)"):
        feedforward_blocks(Y, W_1.T, b_1, W_2, b_2, G, Lam)
    with pytest.raises(ValueError, match=r"b_2 must have shape \(3,\)"):
        feedforward_blocks(Y, W_1, b_1, W_2, b_2[:2], G, Lam)
    with pytest.raises(TypeError, match="Y must be a torch.Tensor"):
        feedforward_blocks(Y.numpy(), W_1, b_1, W_2, b_2, G, Lam)
    with pytest.raises(ValueError, match="Lam must be symmetric"):
        feedforward_blocks(Y, W_1, b_1, W_2, b_2, G, torch.randn(3, 3, 3, dtype=torch.float64))
