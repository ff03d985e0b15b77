"""The Q/K/V Hessian blocks of the flow's attention layer (hessian.flow_blocks): exact against autograd and
against the closed forms of hessian.closed_form, the clustering limit of hessian.md §2.12 and the X-degrees of
§2.4."""

import math

import numpy as np
import pytest
import torch
from flow_reference import reference

from hessian import closed_form
from hessian.flow_blocks import BLOCKS, flow_hessian

F64 = torch.float64


def _random_problem(seed, n=5, d=3, scale=0.8):
    g = torch.Generator().manual_seed(seed)
    X = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=F64), dim=1)
    Q, K, V = (scale * torch.randn(d, d, generator=g, dtype=F64) for _ in range(3))
    return X, Q, K, V, torch.randn(n, d, generator=g, dtype=F64)


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
@pytest.mark.parametrize("loss", ["target", "energy"])
@pytest.mark.parametrize("beta", [0.0, 1.3])
def test_flow_hessian_matches_autograd(dynamics, loss, beta):
    # float64 closed forms vs autograd: agreement is at rounding level (observed <= 1e-14 relative);
    # 1e-10 relative to the largest entry leaves room for the sums of n d^2 products
    # weights of scale 0.4: USA outputs stay O(1), so that e^{beta <f_i, f_j>} of the energy stays finite
    X, Q, K, V, Y = _random_problem(7, scale=0.4)
    H_o, H_f = flow_hessian(X, Q, K, V, Y, beta=beta, dynamics=dynamics, loss=loss)
    H_ref, H_o_ref, H_f_ref = reference(X, Q, K, V, Y, beta, dynamics, loss)
    scale = H_ref.abs().max()
    assert scale > 0
    torch.testing.assert_close(H_o, H_o_ref, rtol=0, atol=1e-10 * scale)
    torch.testing.assert_close(H_f, H_f_ref, rtol=0, atol=1e-10 * scale)
    torch.testing.assert_close(H_o + H_f, H_ref, rtol=0, atol=1e-10 * scale)
    for M in (H_o, H_f):
        torch.testing.assert_close(M, M.T, rtol=0, atol=1e-13 * scale)


def _closed_form_order(H, d):
    """A matrix over [vec_r W_Q, vec_r W_K, vec_r W_V] (W_Q = Q^T, ...) in the flow's order [vec_r Q, vec_r K,
    vec_r V]: entry (a, p) of W_Q = Q^T is entry (p, a) of Q, a transpose inside every block."""
    P = d * d
    return H.reshape(3, d, d, 3, d, d).permute(0, 2, 1, 3, 5, 4).reshape(3 * P, 3 * P)


@pytest.mark.parametrize(("dynamics", "attention"), [("SA", "softmax"), ("USA", "unnormalized")])
@pytest.mark.parametrize("beta", [0.0, 1.3])
def test_flow_blocks_agree_with_the_closed_form_moments(dynamics, attention, beta):
    """The two derivations of the attention moments (GEMM sums over queries here, einsums of the per-query
    moments in ``hessian.closed_form``) give the same H_o and H_f to 1e-12 of the largest entry (observed ~1e-15).

    The flow's layer ``A X V^T`` with scores ``beta <Q x_i, K x_j>`` is the closed forms' ``A X W_V`` with
    W_Q = Q^T, W_K = K^T, W_V = V^T, and its "target" loss is their MSE.
    """
    for seed in range(3):
        X, Q, K, V, Y = _random_problem(seed, n=6, d=3)
        H_o, H_f = flow_hessian(X, Q, K, V, Y, beta=beta, dynamics=dynamics, loss="target")
        kw = dict(loss="mse", attention=attention, beta=beta)
        ref_o = _closed_form_order(closed_form.outer_product_blocks(X, Y, Q.T, K.T, V.T, **kw).matrix, 3)
        ref_f = _closed_form_order(closed_form.functional_blocks(X, Y, Q.T, K.T, V.T, **kw).matrix, 3)
        scale = float((ref_o + ref_f).abs().max())
        torch.testing.assert_close(H_o, ref_o, rtol=0, atol=1e-12 * scale)
        torch.testing.assert_close(H_f, ref_f, rtol=0, atol=1e-12 * scale)
        if beta > 0:
            assert float(ref_f[: 2 * 9].abs().max()) > 1e-3 * scale  # the Q/K curvature is really compared


def test_one_cluster_kills_the_query_key_curvature_but_not_the_value_curvature():
    """All tokens at one point x (SA). The softmax then gives A = 11^T / n, so m_i = x and every centred
    moment of the attention distributions vanishes: M2_i = sum_j a_ij (x_j - m_i)(x_j - m_i)^T = 0 and
    M3_i = 0. dF/dQ = beta V M2_i K^T (x) x_i^T and dF/dK = beta V M2_i (x) q_i^T are 0, so the Q and K
    rows of J, hence of H_o = J^T Lambda J, vanish; the Q/K blocks of H_f are built from M3_i, M2_i and
    s_i = M2_i u_i (note §2.3), so they vanish too. F = x^T V^T per row is linear in V with dF_i/dV =
    I (x) m_i^T = I (x) x^T, hence H_o(V, V) = (2/(n d)) sum_i (I (x) x x^T) = (2/d) I (x) x x^T != 0."""
    rng = np.random.default_rng(5)
    n, d = 6, 3
    x = rng.standard_normal(d)
    x /= np.linalg.norm(x)
    X = torch.from_numpy(np.tile(x, (n, 1)))
    Q, K, V = (torch.from_numpy(rng.standard_normal((d, d))) for _ in range(3))
    Y = torch.from_numpy(rng.standard_normal((n, d)))
    for loss in ("target", "energy"):
        H_o, H_f = flow_hessian(X, Q, K, V, Y, beta=2.0, dynamics="SA", loss=loss)
        P = d * d
        for M in (H_o, H_f):
            # exactly zero up to the rounding of X - mean (identical rows: a few ulps)
            assert float(M[: 2 * P].abs().max()) < 1e-14 * float(H_o.abs().max())
        if loss == "target":
            expected = torch.kron(torch.eye(d, dtype=F64), torch.outer(X[0], X[0])) * 2.0 / d
            torch.testing.assert_close(H_o[2 * P :, 2 * P :], expected, rtol=0, atol=1e-15)
        assert float(H_o[2 * P :, 2 * P :].norm()) > 0.1
    # USA does not normalise: the weights e^{beta <Qx, Kx>} / n of the single point still depend on Q and K
    H_o, H_f = flow_hessian(X, Q, K, V, Y, beta=2.0, dynamics="USA", loss="target")
    assert float(H_o[:P, :P].norm()) > 1e-3 * float(H_o.norm())


DEGREES = {
    ("Q", "Q"): (6, 5, 5),
    ("K", "K"): (6, 5, 5),
    ("Q", "K"): (6, 3, 3),
    ("Q", "V"): (4, 3, 3),
    ("K", "V"): (4, 3, 3),
    ("V", "V"): (2, None, 2),
}


def test_scaled_configuration_follows_the_x_degrees_of_the_note():
    # the note's protocol: log2 of the norm ratio between s = 2e-3 and 1e-3, within 0.01 of the table
    X, Q, K, V, Y = _random_problem(11, n=6, d=3, scale=1.0)
    P = 9
    out = {}
    for s in (1e-3, 2e-3):
        H_o, H_f = flow_hessian(s * X, Q, K, V, Y, beta=1.0, dynamics="SA", loss="target")
        out[s] = {"H_o": H_o, "H_f": H_f, "H": H_o + H_f}
    span = {b: slice(i * P, (i + 1) * P) for i, b in enumerate(BLOCKS)}
    for (r, c), degrees in DEGREES.items():
        for kind, p in zip(("H_o", "H_f", "H"), degrees):
            n1, n2 = (float(out[s][kind][span[r], span[c]].norm()) for s in (1e-3, 2e-3))
            if p is None:
                assert n1 == 0.0 and n2 == 0.0
            else:
                assert abs(math.log2(n2 / n1) - p) < 0.01, (kind, r, c, math.log2(n2 / n1))
