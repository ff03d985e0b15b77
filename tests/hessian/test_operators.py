"""scipy LinearOperator views: equal to the dense matrices, usable by eigsh and cg."""

import numpy as np
import pytest
import torch
from hessian_reference import reference_split
from scipy.sparse.linalg import LinearOperator, aslinearoperator, cg, eigsh

from hessian import functional_hessian_operator, ggn_operator, hessian_operator


@pytest.fixture
def problem(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    names = ("W_Q", "W_K", "W_V")
    return (layer, loss, params, X, Y, names), [m.numpy() for m in reference_split(layer, loss, params, X, Y, names)]


def test_operators_equal_dense(problem):
    args, mats = problem
    for make, M in zip((hessian_operator, ggn_operator, functional_hessian_operator), mats):
        op = make(*args)
        assert isinstance(op, LinearOperator) and op.shape == (21, 21) and op.dtype == np.float64
        np.testing.assert_allclose(op @ np.eye(21), M, atol=1e-12, rtol=0)
        v = np.random.default_rng(0).standard_normal(21)
        np.testing.assert_allclose(op @ v, M @ v, atol=1e-12, rtol=0)
        np.testing.assert_allclose(op.rmatvec(v), M @ v, atol=1e-12, rtol=0)
        np.testing.assert_allclose(op.T @ v, M @ v, atol=1e-12, rtol=0)
        assert np.array_equal(op @ v, op @ v)
    assert op.names == ("W_Q", "W_K", "W_V") and op.shapes == ((1, 3, 2), (1, 3, 2), (1, 3, 3))


def test_chunk_size_and_float32(problem):
    args, (H, _, _) = problem
    op = hessian_operator(*args, chunk_size=4)
    np.testing.assert_allclose(op @ np.eye(21), H, atol=1e-12, rtol=0)
    op32 = hessian_operator(*args, dtype=torch.float32)
    assert op32.dtype == np.float32
    np.testing.assert_allclose(op32 @ np.eye(21, dtype=np.float32), H, atol=1e-4, rtol=1e-4)


def test_eigsh_and_cg_work_directly(problem):
    args, (H, H_o, _) = problem
    top = eigsh(hessian_operator(*args), k=2, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), np.linalg.eigvalsh(H)[-2:], rtol=1e-10, atol=1e-12)
    # damped GGN is symmetric positive definite: cg must solve it to its tolerance
    A = ggn_operator(*args) + aslinearoperator(np.eye(21))
    b = np.random.default_rng(1).standard_normal(21)
    x, info = cg(A, b, rtol=1e-12, atol=0.0)
    assert info == 0
    np.testing.assert_allclose(x, np.linalg.solve(H_o + np.eye(21), b), atol=1e-10)
