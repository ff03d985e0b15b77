"""Hessian-, GGN- and functional-Hessian-vector products against dense autograd matrices."""

import pytest
import torch
from hessian_reference import reference_split

from hessian import (
    MSELoss,
    SelfAttention,
    ggn_vector_product,
    hessian_vector_product,
    make_functional_hvp,
    make_ggnvp,
    make_hvp,
)

ATOL = 1e-12  # float64 autograd on both sides, O(1) entries


@pytest.fixture
def problem(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    names = ("W_Q", "W_K", "W_V")
    return layer, loss, params, X, Y, names, reference_split(layer, loss, params, X, Y, names)


def test_products_match_dense(problem):
    layer, loss, params, X, Y, names, (H, H_o, H_f) = problem
    V = torch.randn(5, 21, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for make, M in ((make_hvp, H), (make_ggnvp, H_o), (make_functional_hvp, H_f)):
        product = make(layer, loss, params, X, Y, names)
        torch.testing.assert_close(product(V), V @ M, atol=ATOL, rtol=0)
        # one vector at a time equals the batched (vmap) product
        torch.testing.assert_close(product(V[2]), (V @ M)[2], atol=ATOL, rtol=0)


def test_symmetry_and_determinism(problem):
    layer, loss, params, X, Y, names, _ = problem
    gen = torch.Generator().manual_seed(1)
    u, v = torch.randn(2, 21, generator=gen, dtype=torch.float64)
    for make in (make_hvp, make_ggnvp):
        product = make(layer, loss, params, X, Y, names)
        assert abs(u @ product(v) - v @ product(u)) < 1e-13
        assert torch.equal(product(v), product(v))
        assert torch.equal(make(layer, loss, params, X, Y, names)(v), product(v))


def test_float32_products(problem):
    layer, loss, params, X, Y, names, (H, _, _) = problem
    v = torch.randn(21, generator=torch.Generator().manual_seed(2))
    out = make_hvp(layer, loss, params, X, Y, names, dtype=torch.float32)(v)
    assert out.dtype == torch.float32
    # float32 round-off on a product of O(10) entries
    torch.testing.assert_close(out.double(), H @ v.double(), atol=1e-4, rtol=1e-4)


def test_pure_products_vmap_over_inputs():
    """The pure functions can be vmapped over many token configurations X at once."""
    layer = SelfAttention(d_model=3, d_k=2, d_v=3)
    params = layer.init(seed=0, std=1.0)
    gen = torch.Generator().manual_seed(4)
    Xs = torch.randn(3, 4, 3, generator=gen, dtype=torch.float64)
    Ys = torch.randn(3, 4, 3, generator=gen, dtype=torch.float64)
    v = torch.randn(6, generator=gen, dtype=torch.float64)
    loss = MSELoss()
    for pure, index in ((hessian_vector_product, 0), (ggn_vector_product, 1)):
        batched = torch.func.vmap(lambda X, Y: pure(layer, loss, params, X, Y, v, blocks=["W_Q"]))(Xs, Ys)
        for b in range(3):
            want = reference_split(layer, loss, params, Xs[b], Ys[b], ["W_Q"])[index] @ v
            torch.testing.assert_close(batched[b], want, atol=ATOL, rtol=0)


def test_bad_vectors(problem):
    layer, loss, params, X, Y, names, _ = problem
    product = make_hvp(layer, loss, params, X, Y, names)
    with pytest.raises(ValueError, match=r"V must have shape \(21,\) or \(k, 21\)"):
        product(torch.zeros(20, dtype=torch.float64))
    with pytest.raises(TypeError, match="V must be a torch.Tensor"):
        product([0.0] * 21)


def test_transformer_readout_gives_the_same_hvp():
    """The benchmark's fast path: logits of the scored rows only, same Hessian-vector product."""
    import dataclasses

    from hessian import CrossEntropyLoss, Transformer

    model = Transformer(d_model=8, d_head=8, d_mlp=16, n_layers=2)
    params = model.init(seed=0)
    tokens = torch.randint(0, 12, (4, 18), generator=torch.Generator().manual_seed(0))
    blocks = ["blocks.0.attn.W_Q", "blocks.1.attn.W_Q"]
    full = make_hvp(model, CrossEntropyLoss(positions=(11, 17), target_shift=1), params, tokens, tokens, blocks)
    short = make_hvp(
        dataclasses.replace(model, readout=(11, 17)), CrossEntropyLoss(), params, tokens, tokens[:, 12:], blocks
    )
    V = torch.randn(3, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = full(V)
    torch.testing.assert_close(short(V), want, atol=1e-12 * want.abs().max().item(), rtol=0)
