"""Exact dense Hessian blocks and the Gauss-Newton split H = H_o + H_f (float64 by default).

Columns are exact products with the unit vectors (``products``), vmapped in chunks, so memory stays
at ``chunk_size`` products plus the (P, P) result. H_o is ``J^T (d^2 loss/dF^2) J`` from forward-mode
Jacobian products and the loss Hessian by autograd: no finite differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_positive_int
from ._problem import Loss, Model, Problem, make_problem
from .block_matrix import BlockMatrix
from .products import ggnvp_closure, hvp_closure

#: default largest P for a dense (P, P) matrix: 4096^2 float64 entries are 128 MiB
MAX_PARAMS = 4096


def check_dense_size(P: int, max_params: int, what: str = "dense matrix") -> None:
    """Refuse a (P, P) allocation above ``max_params`` with the size and the limit in the message."""
    check_positive_int(max_params, "max_params")
    if P > max_params:
        raise ValueError(
            f"{what} over P={P} parameters needs a {P}x{P} matrix ({P * P * 8 / 2**20:.1f} MiB in float64), "
            f"above the limit max_params={max_params}; choose fewer blocks, raise max_params, or use the matrix-free "
            "hessian_operator / ggn_operator"
        )


def _dense(problem: Problem, closure, max_params: int, chunk_size: int) -> BlockMatrix:
    check_dense_size(problem.dim, max_params)
    check_positive_int(chunk_size, "chunk_size")
    product = closure(problem.model, problem.loss, problem.params, problem.X, problem.Y, problem.names, chunk_size)
    eye = torch.eye(problem.dim, dtype=problem.dtype)
    # row i is M e_i = column i; H and G are symmetric, so this is M itself
    return BlockMatrix(product(eye), problem.names, problem.shapes)


def hessian_matrix(
    model: Model, loss: Loss, params: Mapping[str, Tensor], X: Tensor, Y: Tensor, *, blocks: Sequence[str]
) -> Tensor:
    """Pure (P, P) Hessian over ``blocks``, no validation and no size guard: vmappable, e.g. over many X.

    ``torch.func.vmap(lambda X: hessian_matrix(model, loss, params, X, Y, blocks=["W_Q"]))(Xs)`` gives one
    block per token configuration. Use ``dense_hessian`` for checked input and a ``BlockMatrix``.
    """
    names = tuple(blocks)
    P = sum(params[n].numel() for n in names)
    eye = torch.eye(P, dtype=params[names[0]].dtype)
    return hvp_closure(model, loss, params, X, Y, names)(eye)


def ggn_matrix(
    model: Model, loss: Loss, params: Mapping[str, Tensor], X: Tensor, Y: Tensor, *, blocks: Sequence[str]
) -> Tensor:
    """Pure (P, P) outer-product Hessian H_o over ``blocks``; vmappable like ``hessian_matrix``."""
    names = tuple(blocks)
    P = sum(params[n].numel() for n in names)
    eye = torch.eye(P, dtype=params[names[0]].dtype)
    return ggnvp_closure(model, loss, params, X, Y, names)(eye)


def dense_hessian(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    blocks: Sequence[str] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    max_params: int = MAX_PARAMS,
    chunk_size: int = 256,
) -> BlockMatrix:
    """Exact Hessian ``d^2 l / dw^2`` of ``l(w) = loss(model(params, X), Y)`` over the chosen blocks.

    Args:
        model: functional model ``f(params, X)``, e.g. ``SelfAttention(...)``.
        loss: ``loss(output, Y) -> scalar``, e.g. ``MSELoss()``.
        params: dict name -> tensor; blocks not chosen are held fixed.
        X: model input (floating data is cast to ``dtype``).
        Y: loss target.
        blocks: parameter names, e.g. ``["blocks.0.attn.W_Q", "blocks.0.attn.W_V"]``; None = all floating.
        dtype: float64 (default) or float32.
        max_params: refuse P = total size of the blocks above this, before allocating.
        chunk_size: unit vectors per vmap call.

    Returns:
        ``BlockMatrix`` with ``.matrix`` (P, P), ``.blocks[(a, b)]``, ``.boundaries``; row-major vec order.

    Raises:
        ValueError: unknown or repeated block names, non-finite inputs, non-scalar loss, P > max_params.
        TypeError: wrong argument types.
    """
    problem = make_problem(model, loss, params, X, Y, blocks, dtype)
    return _dense(problem, hvp_closure, max_params, chunk_size)


def gauss_newton(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    blocks: Sequence[str] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    max_params: int = MAX_PARAMS,
    chunk_size: int = 256,
) -> BlockMatrix:
    """Exact outer-product (Gauss-Newton) Hessian ``H_o = J^T (d^2 loss / dF^2) J``, ``J = d vec F / dw``.

    Column i is ``J^T Lambda (J e_i)``: a forward-mode Jacobian product, the autograd Hessian of the loss in
    the output, and a vector-Jacobian product; no finite differences, J is never materialised.

    Args:
        model: functional model ``f(params, X)``.
        loss: ``loss(output, Y) -> scalar``.
        params: dict name -> tensor; blocks not chosen are held fixed.
        X: model input; Y: loss target.
        blocks: parameter names; None = all floating parameters.
        dtype: float64 (default) or float32.
        max_params: refuse P above this, before allocating.
        chunk_size: unit vectors per vmap call.

    Returns:
        ``BlockMatrix`` (P, P), PSD for convex losses (MSE, cross-entropy).

    Raises:
        ValueError: unknown or repeated block names, non-finite inputs, non-scalar loss, P > max_params.
        TypeError: wrong argument types.
    """
    problem = make_problem(model, loss, params, X, Y, blocks, dtype)
    return _dense(problem, ggnvp_closure, max_params, chunk_size)


@dataclass(frozen=True)
class HessianSplit:
    """``H = H_o + H_f`` over the same blocks.

    Attributes:
        H: full Hessian.
        H_o: outer-product (Gauss-Newton) part.
        H_f: functional part ``H - H_o``.
    """

    H: BlockMatrix
    H_o: BlockMatrix
    H_f: BlockMatrix


def hessian_split(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    blocks: Sequence[str] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    max_params: int = MAX_PARAMS,
    chunk_size: int = 256,
) -> HessianSplit:
    """H, H_o and H_f = H - H_o in one call; arguments and errors as in ``dense_hessian``."""
    problem = make_problem(model, loss, params, X, Y, blocks, dtype)
    H = _dense(problem, hvp_closure, max_params, chunk_size)
    H_o = _dense(problem, ggnvp_closure, max_params, chunk_size)
    return HessianSplit(H=H, H_o=H_o, H_f=H - H_o)


def functional_hessian(
    model: Model,
    loss: Loss,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    blocks: Sequence[str] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    max_params: int = MAX_PARAMS,
    chunk_size: int = 256,
) -> BlockMatrix:
    """Functional Hessian ``H_f = H - H_o = sum_n (dl/dF_n) d^2 F_n / dw^2``; arguments as in ``dense_hessian``."""
    return hessian_split(
        model, loss, params, X, Y, blocks, dtype=dtype, max_params=max_params, chunk_size=chunk_size
    ).H_f
