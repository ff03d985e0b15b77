"""CurvatureProblem: checked once, its three curvatures, the split and the gradient against autograd (float64)."""

import pytest
import torch
from hessian_reference import flat_objective, reference_split

from hessian import KINDS, Curvature, CurvatureProblem, hessian_split

ATOL = 1e-12  # float64 autograd on both sides, O(1) entries


def test_fields_are_checked_and_cast(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    problem = CurvatureProblem(layer, loss, {k: v.float() for k, v in params.items()}, X.float(), Y, ["W_V", "W_Q"])
    assert problem.names == ("W_V", "W_Q") and problem.shapes == ((1, 3, 3), (1, 3, 2)) and problem.dim == 15
    assert problem.dtype == torch.float64 and problem.X.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in problem.params.values())
    assert CurvatureProblem(layer, loss, params, X, Y, "W_K").names == ("W_K",)
    assert CurvatureProblem(layer, loss, params, X, Y, dtype=torch.float32).dtype == torch.float32
    assert repr(problem) == "CurvatureProblem(P=15, blocks=['W_V', 'W_Q'], dtype=torch.float64)"


def test_three_curvatures_one_per_kind(tiny_attention):
    problem = CurvatureProblem(*tiny_attention)
    assert (problem.H.kind, problem.H_o.kind, problem.H_f.kind) == KINDS == ("H", "H_o", "H_f")
    # built once, so their products and operators are reused
    assert problem.H is problem.H and isinstance(problem.H_f, Curvature) and problem.H_o.problem is problem
    assert problem.curvature("H_o", chunk_size=3).chunk_size == 3


def test_split_against_reference(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    names = ("W_Q", "W_V")
    problem = CurvatureProblem(layer, loss, params, X, Y, names)
    split = problem.split(chunk_size=5)
    for got, want in zip((split.H, split.H_o, split.H_f), reference_split(layer, loss, params, X, Y, names)):
        torch.testing.assert_close(got.matrix, want, atol=ATOL, rtol=0)
        assert got.names == names and got.boundaries == (0, 6, 15)
    assert torch.equal(split.H_f.matrix, split.H.matrix - split.H_o.matrix)
    assert torch.equal(hessian_split(layer, loss, params, X, Y, names).H_f.matrix, problem.H_f.dense().matrix)
    with pytest.raises(ValueError, match="max_params=14"):
        problem.split(max_params=14)


def test_gradient_against_autograd(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    names = ("W_K", "W_V")
    w0, objective, _ = flat_objective(layer, loss, params, X, Y, names)
    g, value = CurvatureProblem(layer, loss, params, X, Y, names).gradient()
    torch.testing.assert_close(g, torch.func.grad(objective)(w0), atol=ATOL, rtol=0)
    assert value.item() == pytest.approx(objective(w0).item(), abs=1e-15)


def test_bad_inputs(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    with pytest.raises(ValueError, match="no parameter named 'W_X'"):
        CurvatureProblem(layer, loss, params, X, Y, ["W_X"])
    with pytest.raises(ValueError, match="duplicates"):
        CurvatureProblem(layer, loss, params, X, Y, ["W_Q", "W_Q"])
    with pytest.raises(ValueError, match="empty"):
        CurvatureProblem(layer, loss, params, X, Y, [])
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="X must be finite"):
        CurvatureProblem(layer, loss, params, bad, Y)
    with pytest.raises(ValueError, match=r"params\['W_Q'\] must be finite"):
        CurvatureProblem(layer, loss, {**params, "W_Q": params["W_Q"] * float("inf")}, X, Y)
    with pytest.raises(ValueError, match="scalar"):
        CurvatureProblem(layer, lambda out, y: (out - y) ** 2, params, X, Y)
    with pytest.raises(ValueError, match="target must match the output shape"):
        CurvatureProblem(layer, loss, params, X, Y[:, :2])
    with pytest.raises(ValueError, match=r"X must have shape \(\.\.\., L, d_model=3\)"):
        CurvatureProblem(layer, loss, params, X[:, :2], Y)
    with pytest.raises(TypeError, match="params must be a mapping"):
        CurvatureProblem(layer, loss, [params["W_Q"]], X, Y)
    with pytest.raises(TypeError, match="dtype"):
        CurvatureProblem(layer, loss, params, X, Y, dtype=torch.float16)
    with pytest.raises(TypeError, match="model must be a callable"):
        CurvatureProblem(None, loss, params, X, Y)
