"""``scipy.sparse.linalg.LinearOperator`` views of H, H_o (GGN) and H_f, so ``eigsh`` and ``cg`` apply directly."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor

from ._problem import Loss, Model
from .products import DEFAULT_CHUNK, make_functional_hvp, make_ggnvp, make_hvp


class CurvatureOperator(LinearOperator):
    """Symmetric (P, P) operator backed by a batched torch product (vmap over the columns).

    Attributes:
        names: block names; shapes: their shapes (row-major concatenation).
        torch_matmat: the torch function (P,) or (k, P) -> same shape, usable without numpy.
    """

    def __init__(self, product: Callable[[Tensor], Tensor]):
        self.torch_matmat = product
        self.names = product.names
        self.shapes = product.shapes
        self._torch_dtype = product.dtype
        P = product.dim
        super().__init__(dtype=np.float64 if product.dtype == torch.float64 else np.float32, shape=(P, P))

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


def _doc(kind: str) -> str:
    return f"""{kind} of ``l(w) = loss(model(params, X), Y)`` over ``blocks`` as a scipy LinearOperator.

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
        ValueError, TypeError: as ``dense_hessian``.
    """


def hessian_operator(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    blocks: Sequence[str] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> CurvatureOperator:
    return CurvatureOperator(make_hvp(model, loss, params, X, Y, blocks, dtype=dtype, chunk_size=chunk_size))


def ggn_operator(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    blocks: Sequence[str] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> CurvatureOperator:
    return CurvatureOperator(make_ggnvp(model, loss, params, X, Y, blocks, dtype=dtype, chunk_size=chunk_size))


def functional_hessian_operator(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    blocks: Sequence[str] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> CurvatureOperator:
    return CurvatureOperator(make_functional_hvp(model, loss, params, X, Y, blocks, dtype=dtype, chunk_size=chunk_size))


hessian_operator.__doc__ = _doc("Hessian H")
ggn_operator.__doc__ = _doc("Gauss-Newton / outer-product Hessian H_o = J^T (d^2 loss/dF^2) J")
functional_hessian_operator.__doc__ = _doc("Functional Hessian H_f = H - H_o")
