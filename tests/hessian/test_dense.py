"""Dense H, H_o, H_f (``CurvatureProblem(...).H.dense()``, ``.split()``, ``hessian_split``) against torch.func.hessian
and J^T Lambda J in float64."""

import pytest
import torch
from hessian_reference import reference_split

from hessian import CrossEntropyLoss, CurvatureProblem, MSELoss, SelfAttention, Transformer, hessian_split
from hessian.dense import ggn_matrix, hessian_matrix

# exact float64 arithmetic on O(1) entries: both sides are autograd, only summation order differs
ATOL = 1e-12


def test_dense_hessian_matches_reference(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    names = ("W_Q", "W_K", "W_V")
    H = CurvatureProblem(layer, loss, params, X, Y, names).H.dense()
    H_ref, _, _ = reference_split(layer, loss, params, X, Y, names)
    torch.testing.assert_close(H.matrix, H_ref, atol=ATOL, rtol=0)
    assert H.names == names and H.boundaries == (0, 6, 12, 21)
    torch.testing.assert_close(H.blocks[("W_Q", "W_V")], H.matrix[0:6, 12:21], atol=0, rtol=0)
    torch.testing.assert_close(H.block("W_V", "W_Q"), H.block("W_Q", "W_V").T, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "layer",
    [
        SelfAttention(d_model=3, d_k=2, d_v=3, causal=True),
        SelfAttention(d_model=3, d_k=2, d_v=3, attention="linear", causal=True),
        SelfAttention(d_model=4, n_heads=2, output=True, residual=0.5, bias=True),
        SelfAttention(d_model=3, joint_qk=True, beta=0.7),
    ],
    ids=["softmax-causal", "linear-causal", "heads-WO-residual-bias", "joint-qk"],
)
def test_split_matches_reference(layer):
    gen = torch.Generator().manual_seed(3)
    params = layer.init(seed=2, std=1.0)
    X = torch.randn(4, layer.d_model, generator=gen, dtype=torch.float64)
    Y = torch.randn(4, layer.d_out, generator=gen, dtype=torch.float64)
    loss = MSELoss()
    names = tuple(n for n in params if n.startswith("W"))
    split = CurvatureProblem(layer, loss, params, X, Y, names).split()
    H, H_o, H_f = reference_split(layer, loss, params, X, Y, names)
    torch.testing.assert_close(split.H.matrix, H, atol=ATOL, rtol=0)
    torch.testing.assert_close(split.H_o.matrix, H_o, atol=ATOL, rtol=0)
    torch.testing.assert_close(split.H_f.matrix, H_f, atol=ATOL, rtol=0)
    # the one-call shortcut is the same computation
    short = hessian_split(layer, loss, params, X, Y, names)
    for got, want in zip((short.H, short.H_o, short.H_f), (split.H, split.H_o, split.H_f)):
        assert torch.equal(got.matrix, want.matrix)
    # F is linear in W_V, so the value block of H_f vanishes (theory note §2.3)
    assert split.H_f.block("W_V").abs().max() < 1e-13


def test_cross_entropy_transformer_blocks():
    model = Transformer(d_model=4, d_head=2, n_heads=2, d_mlp=6, d_vocab=5, n_ctx=6, layer_norm=True)
    params = model.init(seed=0)
    tokens = torch.randint(0, 5, (3, 6), generator=torch.Generator().manual_seed(0))
    loss = CrossEntropyLoss(positions=(2, 5), target_shift=1)
    names = ("blocks.0.attn.W_Q", "blocks.0.attn.W_V", "blocks.0.ln1.w")
    problem = CurvatureProblem(model, loss, params, tokens, tokens, names)
    H, H_o, H_f = problem.H.dense(), problem.H_o.dense(), problem.H_f.dense()
    ref = reference_split(model, loss, params, tokens, tokens, names)
    for got, want in zip((H, H_o, H_f), ref):
        torch.testing.assert_close(got.matrix, want, atol=ATOL, rtol=0)
    # the GGN of a convex loss is PSD
    assert torch.linalg.eigvalsh(H_o.matrix).min() > -1e-12


def test_pure_matrices_vmap_over_token_configurations():
    layer = SelfAttention(d_model=3, d_k=2, d_v=3)
    params = layer.init(seed=0, std=1.0)
    gen = torch.Generator().manual_seed(5)
    Xs = torch.randn(3, 4, 3, generator=gen, dtype=torch.float64)
    Y = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    loss = MSELoss()
    Hs = torch.func.vmap(lambda X: hessian_matrix(layer, loss, params, X, Y, blocks=["W_Q", "W_V"]))(Xs)
    Gs = torch.func.vmap(lambda X: ggn_matrix(layer, loss, params, X, Y, blocks=["W_Q", "W_V"]))(Xs)
    for b in range(3):
        H, H_o, _ = reference_split(layer, loss, params, Xs[b], Y, ["W_Q", "W_V"])
        torch.testing.assert_close(Hs[b], H, atol=ATOL, rtol=0)
        torch.testing.assert_close(Gs[b], H_o, atol=ATOL, rtol=0)


def test_default_blocks_are_all_float_params(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    problem = CurvatureProblem(layer, loss, params, X, Y)
    assert problem.names == problem.H.dense().names == ("W_Q", "W_K", "W_V")


def test_float32_close_to_float64(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    H64 = CurvatureProblem(layer, loss, params, X, Y).H.dense()
    H32 = CurvatureProblem(layer, loss, params, X, Y, dtype=torch.float32).H.dense()
    assert H32.matrix.dtype == torch.float32
    # float32 round-off (~1e-7) amplified by a few dozen operations
    torch.testing.assert_close(H32.matrix.double(), H64.matrix, atol=1e-5, rtol=1e-4)


def test_size_guard_refuses_before_allocating():
    model = Transformer(d_model=64, d_head=64, d_mlp=8)
    params = model.init(seed=0)
    tokens = torch.zeros(1, 18, dtype=torch.long)
    big = CurvatureProblem(
        model, CrossEntropyLoss(), params, tokens, tokens, ["blocks.0.attn.W_Q", "blocks.0.attn.W_K"]
    )
    with pytest.raises(ValueError, match=r"P=8192.*max_params=4096"):
        big.H.dense()
    with pytest.raises(ValueError, match=r"P=8192.*max_params=4096"):
        big.split()
    small = CurvatureProblem(model, CrossEntropyLoss(), params, tokens, tokens, ["unembed.b_U", "blocks.0.mlp.b_in"])
    for kind in ("H_o", "H_f"):
        with pytest.raises(ValueError, match="max_params=10"):
            small.curvature(kind).dense(max_params=10)
