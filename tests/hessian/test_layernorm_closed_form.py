"""LayerNorm closed forms (theory note §4.2, §4.4; checks 11 and 13) against torch's own layer_norm under autograd.

The reference is LayerNorm written out below and differentiated by torch.func in float64, independent of our
formulas and of ``hessian.models``; the input derivatives are also checked against ``torch.nn.functional.layer_norm``.
(Not for the gain: in torch 2.13 every torch.func Hessian of ``F.layer_norm`` has a wrong, asymmetric (w, X)
block, while the written-out expression gives a symmetric Hessian that matches the closed form.) Tolerance 1e-12
absolute (entries are O(1)-O(10) at these sizes,
float64 round-off of the formulas is ~1e-15; the issue's bound is 1e-10).
"""

import pytest
import torch
from torch.func import hessian, jacrev

from hessian.closed_form import compose_layer_norm, layer_norm_blocks, layer_norm_hessian, layer_norm_jacobian

TOL = 1e-12
EPS = 1e-5


def ln(x, w, b, eps=EPS):
    """w * (x - mean) / sqrt(var + eps) + b over the last axis (biased variance), written out."""
    c = x - x.mean(-1, keepdim=True)
    z = c / torch.sqrt((c * c).mean(-1, keepdim=True) + eps)
    z = z if w is None else w * z
    return z if b is None else z + b


def torch_ln(x, w, b, eps=EPS):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


@pytest.fixture
def token():
    g = torch.Generator().manual_seed(3)
    n = 5
    x = 1.7 * torch.randn(n, generator=g, dtype=torch.float64) + 0.3
    w = torch.randn(n, generator=g, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return x, w, b


def test_jacobian_and_hessian_one_token(token):
    x, w, b = token
    J = layer_norm_jacobian(x, weight=w, eps=EPS)
    H = layer_norm_hessian(x, weight=w, eps=EPS)
    for f in (ln, torch_ln):
        torch.testing.assert_close(J, jacrev(lambda v: f(v, w, b))(x), rtol=0, atol=TOL)
        torch.testing.assert_close(H, hessian(lambda v: f(v, w, b))(x), rtol=0, atol=TOL)


def test_full_layout_has_no_cross_token_entries():
    g = torch.Generator().manual_seed(4)
    L, n = 3, 4
    X = torch.randn(L, n, generator=g, dtype=torch.float64)
    w = torch.randn(n, generator=g, dtype=torch.float64)
    b = torch.zeros(n, dtype=torch.float64)
    J_ref = jacrev(lambda V: ln(V, w, b))(X)  # (L, n, L, n)
    H_ref = hessian(lambda V: ln(V, w, b))(X)  # (L, n, L, n, L, n)
    J, H = layer_norm_jacobian(X, weight=w, eps=EPS), layer_norm_hessian(X, weight=w, eps=EPS)
    idx = torch.arange(L)
    torch.testing.assert_close(J_ref[idx, :, idx, :], J, rtol=0, atol=TOL)
    torch.testing.assert_close(H_ref[idx, :, idx, :, idx, :], H, rtol=0, atol=TOL)
    # everything off the token diagonal is exactly zero
    J_off = J_ref.clone()
    J_off[idx, :, idx, :] = 0
    H_off = H_ref.clone()
    H_off[idx, :, idx, :, idx, :] = 0
    assert J_off.abs().max() == 0 and H_off.abs().max() == 0


def test_identities(token):
    x, _, _ = token
    n = x.shape[0]
    J = layer_norm_jacobian(x, eps=EPS)
    ones = torch.ones(n, dtype=torch.float64)
    # shift invariance LN(x + c 1) = LN(x): J 1 = 0
    assert (J @ ones).abs().max() < 1e-14
    H = layer_norm_hessian(x, eps=EPS)
    # with unit gain the Hessian of z is symmetric in all three indices
    for perm in [(1, 0, 2), (0, 2, 1), (2, 1, 0)]:
        torch.testing.assert_close(H, H.permute(perm), rtol=0, atol=1e-14)
    # eps = 0: scale invariance, J x = 0, and derivatives scale as 1/s, 1/s^2
    J0 = layer_norm_jacobian(x, eps=0.0)
    assert (J0 @ x).abs().max() < 1e-13
    torch.testing.assert_close(layer_norm_jacobian(3 * x, eps=0.0), J0 / 3, rtol=1e-13, atol=0)
    torch.testing.assert_close(
        layer_norm_hessian(3 * x, eps=0.0), layer_norm_hessian(x, eps=0.0) / 9, rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("per_token_loss", [True, False])
def test_loss_blocks_equal_autograd(per_token_loss):
    """H, H_o, H_f of l(LN(X; w, b)) over (X, w, b): per-token loss (cross-entropy) and one coupling all tokens."""
    g = torch.Generator().manual_seed(5)
    L, n = 3, 4
    X = 2.0 * torch.randn(L, n, generator=g, dtype=torch.float64) + 0.5
    w, b = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    targets = torch.randint(0, n, (L,), generator=g)
    R = torch.randn(L * n, 3, generator=g, dtype=torch.float64)

    if per_token_loss:

        def loss(Z):
            return -torch.log_softmax(Z, -1).gather(-1, targets[:, None]).mean()
    else:

        def loss(Z):
            return torch.tanh(Z.reshape(-1) @ R).sum() + 0.1 * (Z.sum() ** 2)

    sizes = [L * n, n, n]

    def unpack(v):
        Xv, wv, bv = v.split(sizes)
        return Xv.reshape(L, n), wv, bv

    v0 = torch.cat([X.reshape(-1), w, b])
    H_ref = hessian(lambda v: loss(ln(*unpack(v))))(v0)
    Jout = jacrev(lambda v: ln(*unpack(v)).reshape(-1))(v0)
    Z = ln(X, w, b)
    Lam_full = hessian(lambda z: loss(z.reshape(L, n)))(Z.reshape(-1))
    H_o_ref = Jout.T @ Lam_full @ Jout
    G = torch.func.grad(loss)(Z)
    Lam = Lam_full.reshape(L, n, L, n)
    if per_token_loss:  # pass the per-token form (L, n, n) of a loss that is a sum over tokens
        Lam = Lam[torch.arange(L), :, torch.arange(L), :]
    split = layer_norm_blocks(X, w, b, G, Lam, eps=EPS)
    torch.testing.assert_close(H_ref, H_ref.T, rtol=0, atol=1e-14)
    torch.testing.assert_close(split.H.matrix, H_ref, rtol=0, atol=TOL)
    torch.testing.assert_close(split.H_o.matrix, H_o_ref, rtol=0, atol=TOL)
    torch.testing.assert_close(split.H_f.matrix, H_ref - H_o_ref, rtol=0, atol=TOL)
    # LN is linear in (w, b) jointly: those blocks have no functional part
    for a, c in [("w", "w"), ("b", "b"), ("w", "b"), ("b", "X")]:
        assert split.H_f.block(a, c).abs().max() == 0
    assert split.H.names == ("X", "w", "b")


def test_chain_rule_through_layer_norm():
    """Z = LN(S(p)) for a smooth non-linear S: autograd d^2 Z equals J_LN d^2 S + H_LN[dS, dS] (check 13)."""
    g = torch.Generator().manual_seed(6)
    L, n, P = 2, 4, 3
    A = torch.randn(L, n, P, generator=g, dtype=torch.float64)
    C = torch.randn(L, n, P, P, generator=g, dtype=torch.float64)
    w = torch.randn(n, generator=g, dtype=torch.float64)
    p0 = torch.randn(P, generator=g, dtype=torch.float64)

    def S(p):
        return torch.sin(A @ p) + 0.5 * torch.einsum("tkpq,p,q->tk", C, p, p)

    dS, d2S = jacrev(S)(p0), hessian(S)(p0)
    dZ, d2Z = compose_layer_norm(S(p0), dS, d2S, weight=w, eps=EPS)
    Zfn = lambda p: ln(S(p), w, None)  # noqa: E731
    torch.testing.assert_close(dZ, jacrev(Zfn)(p0), rtol=0, atol=TOL)
    torch.testing.assert_close(d2Z, hessian(Zfn)(p0), rtol=0, atol=TOL)


def test_guards():
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        layer_norm_jacobian([1.0, 2.0])
    with pytest.raises(TypeError, match="floating"):
        layer_norm_hessian(torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="eps must be"):
        layer_norm_jacobian(x, eps=-1.0)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        layer_norm_jacobian(x, weight=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="constant token"):
        layer_norm_jacobian(torch.ones(4, dtype=torch.float64), eps=0.0)
    with pytest.raises(ValueError, match="at least 2 features"):
        layer_norm_jacobian(torch.ones(3, 1, dtype=torch.float64))
    w = b = torch.ones(4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"G \(loss gradient"):
        layer_norm_blocks(x, w, b, torch.zeros(3, 5, dtype=torch.float64), torch.zeros(3, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"Lam \(loss Hessian"):
        layer_norm_blocks(x, w, b, torch.zeros(3, 4, dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="dx must have shape"):
        compose_layer_norm(x, torch.zeros(3, 5, 2, dtype=torch.float64), torch.zeros(3, 4, 2, 2, dtype=torch.float64))
