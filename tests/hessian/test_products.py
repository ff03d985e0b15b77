"""Hessian-, GGN- and functional-Hessian-vector products against dense autograd matrices."""

import dataclasses

import pytest
import torch
from hessian_reference import reference_split

from hessian import KINDS, CrossEntropyLoss, CurvatureProblem, MSELoss, SelfAttention, Transformer
from hessian.products import (
    functional_hessian_vector_product,
    ggn_vector_product,
    hessian_vector_product,
)

ATOL = 1e-12  # float64 autograd on both sides, O(1) entries


@pytest.fixture
def problem(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    names = ("W_Q", "W_K", "W_V")
    return CurvatureProblem(layer, loss, params, X, Y, names), reference_split(layer, loss, params, X, Y, names)


def test_products_match_dense(problem):
    problem, mats = problem
    V = torch.randn(21, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for kind, M in zip(KINDS, mats):
        curvature = problem.curvature(kind)
        torch.testing.assert_close(curvature.matmat(V), M @ V, atol=ATOL, rtol=0)
        # one vector at a time equals the batched (vmap) product
        torch.testing.assert_close(curvature.matvec(V[:, 2]), (M @ V)[:, 2], atol=ATOL, rtol=0)
        # every chunk size gives the same product
        torch.testing.assert_close(problem.curvature(kind, chunk_size=2).matmat(V), M @ V, atol=ATOL, rtol=0)
        torch.testing.assert_close(problem.curvature(kind, chunk_size=None).matmat(V), M @ V, atol=ATOL, rtol=0)


def test_symmetry_and_determinism(problem):
    problem, _ = problem
    layer, loss, params, X, Y = problem.model, problem.loss, problem.params, problem.X, problem.Y
    gen = torch.Generator().manual_seed(1)
    u, v = torch.randn(2, 21, generator=gen, dtype=torch.float64)
    for kind in ("H", "H_o"):
        curvature = problem.curvature(kind)
        assert abs(u @ curvature.matvec(v) - v @ curvature.matvec(u)) < 1e-13
        assert torch.equal(curvature.matvec(v), curvature.matvec(v))
        fresh = CurvatureProblem(layer, loss, params, X, Y, problem.names).curvature(kind)
        assert torch.equal(fresh.matvec(v), curvature.matvec(v))


def test_float32_products(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    H = reference_split(layer, loss, params, X, Y, ("W_Q", "W_K", "W_V"))[0]
    v = torch.randn(21, generator=torch.Generator().manual_seed(2))
    out = CurvatureProblem(layer, loss, params, X, Y, dtype=torch.float32).H.matvec(v)
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
    pures = (hessian_vector_product, ggn_vector_product, functional_hessian_vector_product)
    for index, pure in enumerate(pures):
        batched = torch.func.vmap(lambda X, Y: pure(layer, loss, params, X, Y, v, blocks=["W_Q"]))(Xs, Ys)
        for b in range(3):
            want = reference_split(layer, loss, params, Xs[b], Ys[b], ["W_Q"])[index] @ v
            torch.testing.assert_close(batched[b], want, atol=ATOL, rtol=0)


def test_bad_vectors(problem):
    problem, _ = problem
    with pytest.raises(ValueError, match=r"v must have shape \(21,\)"):
        problem.H.matvec(torch.zeros(20, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"v must have shape \(21,\)"):
        problem.H.matvec(torch.zeros(21, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"V must have shape \(21, k\)"):
        problem.H_o.matmat(torch.zeros(3, 21, dtype=torch.float64))
    with pytest.raises(TypeError, match="v must be a torch.Tensor"):
        problem.H.matvec([0.0] * 21)
    assert problem.H_f.matmat(torch.zeros(21, 0, dtype=torch.float64)).shape == (21, 0)


def test_transformer_readout_gives_the_same_hvp():
    """The benchmark's fast path: logits of the scored rows only, same Hessian-vector product."""
    model = Transformer(d_model=8, d_head=8, d_mlp=16, n_layers=2)
    params = model.init(seed=0)
    tokens = torch.randint(0, 12, (4, 18), generator=torch.Generator().manual_seed(0))
    blocks = ["blocks.0.attn.W_Q", "blocks.1.attn.W_Q"]
    loss = CrossEntropyLoss(positions=(11, 17), target_shift=1)
    full = CurvatureProblem(model, loss, params, tokens, tokens, blocks).H
    short = CurvatureProblem(
        dataclasses.replace(model, readout=(11, 17)), CrossEntropyLoss(), params, tokens, tokens[:, 12:], blocks
    ).H
    V = torch.randn(128, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = full.matmat(V)
    torch.testing.assert_close(short.matmat(V), want, atol=1e-12 * want.abs().max().item(), rtol=0)
