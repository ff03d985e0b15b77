"""``scipy.sparse.linalg.LinearOperator`` views of a curvature, so ``eigsh`` and ``cg`` apply directly."""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor

from ._problem import Problem, make_problem
from .products import DEFAULT_CHUNK, Product, checked_rows, product_of


class CurvatureOperator(LinearOperator):
    """Symmetric (P, P) operator backed by a batched torch product (vmap over the columns).

    Args:
        torch_matmat: (P,) or (k, P) -> same shape (rows are vectors).
        names, shapes: the blocks of the rows and columns (row-major concatenation).
        dtype: torch.float64 or torch.float32; the operator's numpy dtype follows.

    Attributes:
        names, shapes: as given; torch_matmat: the torch function, usable without numpy.
    """

    def __init__(
        self,
        torch_matmat: Callable[[Tensor], Tensor],
        names: tuple[str, ...],
        shapes: tuple[tuple[int, ...], ...],
        dtype: torch.dtype,
    ):
        self.torch_matmat = torch_matmat
        self.names = names
        self.shapes = shapes
        self._torch_dtype = dtype
        P = sum(prod(s) for s in shapes)
        super().__init__(dtype=np.float64 if dtype == torch.float64 else np.float32, shape=(P, P))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        v = torch.as_tensor(np.ascontiguousarray(np.ravel(x)), dtype=self._torch_dtype)
        return self.torch_matmat(v).numpy().reshape(np.shape(x))

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        V = torch.as_tensor(np.ascontiguousarray(np.asarray(X).T), dtype=self._torch_dtype)
        return (self.torch_matmat(V) if V.shape[0] else V).numpy().T

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self._matmat(X)

    def _adjoint(self) -> CurvatureOperator:
        return self


def curvature_operator(problem: Problem, product: Product, chunk_size: int | None) -> CurvatureOperator:
    """The operator of a product of a checked problem, ``chunk_size`` columns per vmap call."""
    return CurvatureOperator(checked_rows(problem, product, chunk_size), problem.names, problem.shapes, problem.dtype)


def _operator(kind, model, loss, params, X, Y, blocks, dtype, chunk_size) -> CurvatureOperator:
    problem = make_problem(model, loss, params, X, Y, blocks, dtype)
    return curvature_operator(problem, product_of(problem, kind), chunk_size)


def hessian_operator(
    model, loss, params, X, Y, blocks=None, *, dtype=torch.float64, chunk_size=DEFAULT_CHUNK
) -> CurvatureOperator:
    """``CurvatureProblem(model, loss, params, X, Y, blocks, dtype=dtype).H.operator()`` in one call.

    Args:
        model: functional model ``f(params, X)``.
        loss: ``loss(output, Y) -> scalar``.
        params: dict name -> tensor.
        X: model input; Y: loss target.
        blocks: parameter names (None: all floating parameters).
        dtype: torch.float64 (default) or torch.float32; the operator's numpy dtype follows.
        chunk_size: columns per vmap call in ``matmat`` (None: all at once).

    Returns:
        ``CurvatureOperator`` of shape (P, P): symmetric, deterministic; ``.torch_matmat`` is the torch version.

    Raises:
        ValueError, TypeError: as ``CurvatureProblem``.
    """
    return _operator("H", model, loss, params, X, Y, blocks, dtype, chunk_size)
