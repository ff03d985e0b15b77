"""scipy LinearOperator views: equal to the dense matrices, usable by eigsh and cg."""

import numpy as np
import pytest
import torch
from hessian_reference import reference_split
from scipy.sparse.linalg import LinearOperator, aslinearoperator, cg, eigsh

from hessian import KINDS, CurvatureProblem, hessian_operator


@pytest.fixture
def problem(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    names = ("W_Q", "W_K", "W_V")
    mats = [m.numpy() for m in reference_split(layer, loss, params, X, Y, names)]
    return CurvatureProblem(layer, loss, params, X, Y, names), mats


def test_operators_equal_dense(problem):
    problem, mats = problem
    for kind, M in zip(KINDS, mats):
        op = problem.curvature(kind).operator()
        assert isinstance(op, LinearOperator) and op.shape == (21, 21) and op.dtype == np.float64
        np.testing.assert_allclose(op @ np.eye(21), M, atol=1e-12, rtol=0)
        v = np.random.default_rng(0).standard_normal(21)
        np.testing.assert_allclose(op @ v, M @ v, atol=1e-12, rtol=0)
        np.testing.assert_allclose(op.rmatvec(v), M @ v, atol=1e-12, rtol=0)
        np.testing.assert_allclose(op.T @ v, M @ v, atol=1e-12, rtol=0)
        assert np.array_equal(op @ v, op @ v)
        assert op.names == ("W_Q", "W_K", "W_V") and op.shapes == ((1, 3, 2), (1, 3, 2), (1, 3, 3))
    # one operator per curvature, built once
    assert problem.H.operator() is problem.H.operator()


def test_shortcut_equals_the_new_api(problem):
    problem, _ = problem
    args = (problem.model, problem.loss, problem.params, problem.X, problem.Y, problem.names)
    V = np.random.default_rng(2).standard_normal((21, 3))
    assert np.array_equal(hessian_operator(*args) @ V, problem.H.operator() @ V)


def test_chunk_size_and_float32(problem):
    problem, (H, _, _) = problem
    op = problem.curvature("H", chunk_size=4).operator()
    np.testing.assert_allclose(op @ np.eye(21), H, atol=1e-12, rtol=0)
    p32 = CurvatureProblem(problem.model, problem.loss, problem.params, problem.X, problem.Y, dtype=torch.float32)
    op32 = p32.H.operator()
    assert op32.dtype == np.float32
    np.testing.assert_allclose(op32 @ np.eye(21, dtype=np.float32), H, atol=1e-4, rtol=1e-4)


def test_eigsh_and_cg_work_directly(problem):
    problem, (H, H_o, _) = problem
    top = eigsh(problem.H.operator(), k=2, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), np.linalg.eigvalsh(H)[-2:], rtol=1e-10, atol=1e-12)
    # damped GGN is symmetric positive definite: cg must solve it to its tolerance
    A = problem.H_o.operator() + aslinearoperator(np.eye(21))
    b = np.random.default_rng(1).standard_normal(21)
    x, info = cg(A, b, rtol=1e-12, atol=0.0)
    assert info == 0
    np.testing.assert_allclose(x, np.linalg.solve(H_o + np.eye(21), b), atol=1e-10)
