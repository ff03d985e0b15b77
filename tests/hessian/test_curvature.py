"""Curvature: products, dense blocks, operator and estimates of H, H_o, H_f against dense autograd matrices.

References: ``reference_split`` (torch.func.hessian and J^T Lambda J with J by jacrev, float64) and numpy/LAPACK
on those matrices. The estimates are the functions of ``hessian.estimators`` / ``hessian.conditioning`` (tested
there); here they must equal the exact values on the reference matrix, through the curvature's own operator.
"""

import numpy as np
import pytest
import torch
from hessian_reference import reference_split

from hessian import KINDS, Curvature, CurvatureProblem
from hessian.conditioning import negative_mass_from_eigenvalues

ATOL = 1e-12  # float64 autograd on both sides, O(1) entries


@pytest.fixture
def problem(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    names = ("W_Q", "W_K", "W_V")
    return CurvatureProblem(layer, loss, params, X, Y, names), reference_split(layer, loss, params, X, Y, names)


def test_products_and_dense_against_reference(problem):
    problem, mats = problem
    V = torch.randn(21, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for kind, M in zip(KINDS, mats):
        curvature = problem.curvature(kind)
        assert (curvature.dim, curvature.names, curvature.dtype) == (21, problem.names, torch.float64)
        dense = curvature.dense()
        torch.testing.assert_close(dense.matrix, M, atol=ATOL, rtol=0)
        assert dense.names == problem.names and dense.shapes == problem.shapes
        torch.testing.assert_close(curvature.matmat(V), M @ V, atol=ATOL, rtol=0)
        torch.testing.assert_close(curvature.matvec(V[:, 1]), M @ V[:, 1], atol=ATOL, rtol=0)
        # float32 vectors are cast to the problem's dtype
        assert curvature.matvec(V[:, 1].float()).dtype == torch.float64
        np.testing.assert_allclose(curvature.operator() @ V.numpy(), (M @ V).numpy(), atol=ATOL, rtol=0)
    assert torch.equal(problem.H.dense(chunk_size=7).matrix, problem.H.dense().matrix)


def test_estimates_equal_exact_values_of_the_reference(problem):
    problem, mats = problem
    for kind, M in zip(KINDS, mats):
        curvature = problem.curvature(kind)
        M = M.numpy()
        lam = np.linalg.eigvalsh(M)
        scale = np.abs(lam).max()
        assert curvature.trace(method="exact").value == pytest.approx(np.trace(M), abs=ATOL)
        assert curvature.frobenius_norm().value == pytest.approx(np.linalg.norm(M), rel=1e-12)
        np.testing.assert_allclose(curvature.diagonal().value, np.diag(M), atol=ATOL)
        np.testing.assert_allclose(curvature.top_eigenvalues(k=2, tol=1e-12).value, lam[::-1][:2], atol=1e-9 * scale)
        np.testing.assert_allclose(
            curvature.extreme_eigenvalues(k=2).values, np.r_[lam[:2], lam[-2:]], atol=1e-9 * scale
        )
        cond = curvature.condition_number()
        assert (cond.largest, cond.smallest) == (pytest.approx(lam[-1], abs=1e-9), pytest.approx(lam[0], abs=1e-9))
        want = negative_mass_from_eigenvalues(lam)
        got = curvature.negative_mass()
        assert got.fraction == pytest.approx(want.fraction, abs=1e-12) and got.mass == pytest.approx(
            want.mass, abs=1e-9
        )
        # 10 Lanczos steps integrate x^2 exactly (degree <= 19), so only probe noise remains
        est = curvature.spectral_density(num_probes=30, num_steps=10, seed=0).expectation(lambda x: x**2)
        assert abs(est.value - np.sum(lam**2)) < 4 * est.stderr + 1e-10


def test_random_estimates_use_the_options(problem):
    problem, (H, _, _) = problem
    est = problem.H.trace(method="hutchinson", num_samples=20, seed=3)
    assert est.num_matvecs == 20 and est.stderr > 0
    assert abs(est.value - torch.trace(H).item()) < 5 * est.stderr
    assert problem.H.trace(method="hutchinson", num_samples=20, seed=3) == est


def test_float32_problem(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    H = reference_split(layer, loss, params, X, Y, ("W_Q", "W_K", "W_V"))[0]
    curvature = CurvatureProblem(layer, loss, params, X, Y, dtype=torch.float32).H
    assert curvature.dense().matrix.dtype == torch.float32 and curvature.operator().dtype == np.float32
    torch.testing.assert_close(curvature.dense().matrix.double(), H, atol=1e-5, rtol=1e-4)


def test_bad_arguments(problem):
    problem, _ = problem
    with pytest.raises(ValueError, match=r"kind must be one of \('H', 'H_o', 'H_f'\), got 'G'"):
        problem.curvature("G")
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        problem.curvature("H", chunk_size=0)
    with pytest.raises(TypeError, match="problem must be a CurvatureProblem"):
        Curvature((problem.model, problem.loss), "H")
    with pytest.raises(ValueError, match="max_params=20"):
        problem.H_o.dense(max_params=20)
    assert repr(problem.H_f) == "Curvature('H_f', P=21, blocks=['W_Q', 'W_K', 'W_V'], dtype=torch.float64)"
