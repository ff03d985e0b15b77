"""Special closed forms: linear attention in Sigma_xx (§2.5), uniform attention (§2.4), joint W_QK (§2.7)."""

import math

import torch

from hessian import MSELoss, SelfAttention, hessian_split
from hessian.closed_form import (
    functional_blocks,
    joint_qk_blocks,
    linear_attention_outer_product_blocks,
    outer_product_blocks,
    t_functional_term,
    uniform_attention_outer_product_blocks,
)


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)


def test_linear_attention_sigma_forms():
    """Check 5: the six Sigma_xx forms equal autograd (relative 1e-12); H_f is block-hollow."""
    layer = SelfAttention(d_model=3, d_k=2, d_v=3, attention="linear")
    p = layer.init(seed=1, std=1.0)
    X, Y = data()
    split = hessian_split(layer, MSELoss(), p, X, Y)
    H_o = linear_attention_outer_product_blocks(X, p["W_Q"][0], p["W_K"][0], p["W_V"][0])
    scale = split.H.matrix.abs().max()
    torch.testing.assert_close(H_o.matrix, split.H_o.matrix, atol=1e-12 * scale, rtol=0)
    for name in ("W_Q", "W_K", "W_V"):
        assert split.H_f.block(name).abs().max() <= 1e-12 * scale
    # off-diagonal H_f(Q,K) = beta (X^T G W_V^T X^T X) (x) I
    G = 2 * (layer(p, X) - Y) / 12
    want = torch.kron(X.T @ G @ p["W_V"][0].T @ X.T @ X, torch.eye(2, dtype=torch.float64)) / math.sqrt(2)
    torch.testing.assert_close(split.H_f.block("W_Q", "W_K"), want, atol=1e-12 * scale, rtol=0)


def test_uniform_attention_limit():
    """Check 3: W_Q = 0 gives uniform attention; H_o(Q,Q) and H_o(V,V) in Sigma_xx, C and the token mean."""
    layer = SelfAttention(d_model=3, d_k=2, d_v=3)
    p = layer.init(seed=1, std=1.0)
    p["W_Q"] = torch.zeros_like(p["W_Q"])
    X, Y = data()
    split = hessian_split(layer, MSELoss(), p, X, Y)
    forms = uniform_attention_outer_product_blocks(X, p["W_K"][0], p["W_V"][0])
    torch.testing.assert_close(forms["W_Q"], split.H_o.block("W_Q"), atol=1e-13, rtol=0)
    torch.testing.assert_close(forms["W_V"], split.H_o.block("W_V"), atol=1e-13, rtol=0)


def test_joint_qk_blocks_and_relation_to_two_matrices():
    """Check 6: W_QK blocks equal autograd; H(Q,Q) = P_Q^T H(QK,QK) P_Q, H(Q,K) = P_Q^T H(QK,QK) P_K + T-functional."""
    X, Y = data(1)
    beta = 1 / math.sqrt(2)
    two = SelfAttention(d_model=3, d_k=2, d_v=3)
    p = two.init(seed=3, std=1.0)
    W_Q, W_K, W_V = p["W_Q"][0], p["W_K"][0], p["W_V"][0]
    W_QK = W_Q @ W_K.T
    joint = SelfAttention(d_model=3, d_v=3, joint_qk=True, beta=beta)
    pj = {"W_QK": W_QK[None], "W_V": p["W_V"]}
    split_joint = hessian_split(joint, MSELoss(), pj, X, Y)
    H_o, H_f = joint_qk_blocks(X, Y, W_QK, W_V, beta=beta)
    torch.testing.assert_close(H_o.matrix, split_joint.H_o.matrix, atol=1e-12, rtol=0)
    torch.testing.assert_close(H_f.matrix, split_joint.H_f.matrix, atol=1e-12, rtol=0)

    H_qk = split_joint.H.block("W_QK")
    P_Q = torch.kron(torch.eye(3, dtype=torch.float64), W_K)  # d vec(W_Q W_K^T) / d vec W_Q = I (x) W_K
    P_K = torch.einsum("ae,bc->abce", W_Q, torch.eye(3, dtype=torch.float64)).reshape(9, 6)
    split_two = hessian_split(two, MSELoss(), p, X, Y)
    # the beta of the joint layer already carries the 1/sqrt(d_K), so P_Q, P_K have no extra factor
    torch.testing.assert_close(split_two.H.block("W_Q"), P_Q.T @ H_qk @ P_Q, atol=1e-12, rtol=0)
    torch.testing.assert_close(split_two.H.block("W_K"), P_K.T @ H_qk @ P_K, atol=1e-12, rtol=0)
    T = t_functional_term(X, Y, W_Q, W_K, W_V)
    torch.testing.assert_close(split_two.H.block("W_Q", "W_K"), P_Q.T @ H_qk @ P_K + T, atol=1e-12, rtol=0)

    # [[0, T], [T^T, 0]] has eigenvalues +-sigma_r(grad) * beta, each d_K times
    E = torch.zeros(12, 12, dtype=torch.float64)
    E[:6, 6:], E[6:, :6] = T, T.T
    grad_qk = T[::2, ::2] / beta
    sv = torch.linalg.svdvals(grad_qk) * beta
    want = torch.sort(torch.cat([sv, sv, -sv, -sv])).values
    torch.testing.assert_close(torch.linalg.eigvalsh(E), want, atol=1e-12, rtol=0)


def test_heads_cross_blocks():
    """Check 7: with W_O cross-head H_f blocks vanish but H_o couples heads; without W_O both vanish (MSE)."""
    g = torch.Generator().manual_seed(9)
    for output in (True, False):
        layer = SelfAttention(d_model=4, n_heads=2, d_k=2, d_v=2, output=output)
        p = layer.init(seed=4, std=1.0)
        X = torch.randn(4, 4, generator=g, dtype=torch.float64)
        Y = torch.randn(4, 4, generator=g, dtype=torch.float64)
        split = hessian_split(layer, MSELoss(), p, X, Y, ["W_Q", "W_V"])
        # head h occupies rows h*8:(h+1)*8 of the (2, 4, 2) W_Q block
        for M, name in ((split.H_f, "H_f"), (split.H_o, "H_o")):
            cross = M.block("W_Q")[:8, 8:].abs().max()
            if output and name == "H_o":
                assert cross > 1e-3
            else:
                assert cross < 1e-14


def test_closed_forms_match_each_other_for_linear_attention():
    X, Y = data(3)
    layer = SelfAttention(d_model=3, d_k=2, d_v=3, attention="linear")
    p = layer.init(seed=2, std=1.0)
    W = (p["W_Q"][0], p["W_K"][0], p["W_V"][0])
    general = outer_product_blocks(X, Y, *W, attention="linear")
    sigma = linear_attention_outer_product_blocks(X, *W)
    torch.testing.assert_close(general.matrix, sigma.matrix, atol=1e-12 * sigma.matrix.abs().max(), rtol=0)
    assert functional_blocks(X, Y, *W, attention="linear").block("W_Q").abs().max() == 0
