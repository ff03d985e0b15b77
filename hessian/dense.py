"""Exact dense Hessian blocks and the Gauss-Newton split H = H_o + H_f (float64 by default).

Columns are exact products with the unit vectors (``products``), vmapped in chunks, so memory stays
at ``chunk_size`` products plus the (P, P) result. H_o is ``J^T (d^2 loss/dF^2) J`` from forward-mode
Jacobian products and the loss Hessian by autograd: no finite differences. H_f is ``H - H_o``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._problem import Loss, Model, Problem, make_problem
from .block_matrix import BlockMatrix
from .checks import check_int
from .products import ggn_product, hessian_product, product_of

#: default largest P for a dense (P, P) matrix: 4096^2 float64 entries are 128 MiB
MAX_PARAMS = 4096
#: unit vectors per vmap call when a dense matrix is assembled
DENSE_CHUNK = 256


def check_dense_size(P: int, max_params: int, what: str = "dense matrix") -> None:
    """Refuse a (P, P) allocation above ``max_params`` with the size and the limit in the message."""
    check_int("max_params", max_params)
    if P > max_params:
        raise ValueError(
            f"{what} over P={P} parameters needs a {P}x{P} matrix ({P * P * 8 / 2**20:.1f} MiB in float64), "
            f"above the limit max_params={max_params}; choose fewer blocks, raise max_params, or use the matrix-free "
            "operator (CurvatureProblem(...).curvature(kind).operator())"
        )


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


def dense_matrix(
    problem: Problem, kind: str, *, max_params: int = MAX_PARAMS, chunk_size: int = DENSE_CHUNK
) -> BlockMatrix:
    """The (P, P) ``BlockMatrix`` of curvature ``kind`` ("H", "H_o" or "H_f") of a checked problem.

    Raises:
        ValueError: P > max_params (before allocating), chunk_size < 1.
    """
    if kind == "H_f":
        return split(problem, max_params=max_params, chunk_size=chunk_size).H_f
    check_dense_size(problem.dim, max_params)
    check_int("chunk_size", chunk_size)
    eye = torch.eye(problem.dim, dtype=problem.dtype)
    # row i is M e_i = column i; H and G are symmetric, so this is M itself
    return BlockMatrix(product_of(problem, kind)(eye, chunk_size), problem.names, problem.shapes)


def split(problem: Problem, *, max_params: int = MAX_PARAMS, chunk_size: int = DENSE_CHUNK) -> HessianSplit:
    """H, H_o and H_f = H - H_o of a checked problem (two dense assemblies, not three)."""
    H = dense_matrix(problem, "H", max_params=max_params, chunk_size=chunk_size)
    H_o = dense_matrix(problem, "H_o", max_params=max_params, chunk_size=chunk_size)
    return HessianSplit(H=H, H_o=H_o, H_f=H - H_o)


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
    chunk_size: int = DENSE_CHUNK,
) -> HessianSplit:
    """``CurvatureProblem(model, loss, params, X, Y, blocks, dtype=dtype).split(...)`` in one call.

    Args:
        model: functional model ``f(params, X)``, e.g. ``SelfAttention(...)``.
        loss: ``loss(output, Y) -> scalar``, e.g. ``MSELoss()``.
        params: dict name -> tensor; blocks not chosen are held fixed.
        X: model input (floating data is cast to ``dtype``); Y: loss target.
        blocks: parameter names, e.g. ``["blocks.0.attn.W_Q", "blocks.0.attn.W_V"]``; None = all floating.
        dtype: float64 (default) or float32.
        max_params: refuse P = total size of the blocks above this, before allocating.
        chunk_size: unit vectors per vmap call.

    Returns:
        ``HessianSplit(H, H_o, H_f)`` of ``BlockMatrix`` (``.matrix`` (P, P), ``.block(a, b)``, ``.boundaries``).

    Raises:
        ValueError: unknown or repeated block names, non-finite inputs, non-scalar loss, P > max_params.
        TypeError: wrong argument types.
    """
    return split(make_problem(model, loss, params, X, Y, blocks, dtype), max_params=max_params, chunk_size=chunk_size)


# Pure forms without validation or size guard, for torch.func transforms (vmap over many inputs).


def hessian_matrix(
    model: Model, loss: Loss, params: Mapping[str, Tensor], X: Tensor, Y: Tensor, *, blocks: Sequence[str]
) -> Tensor:
    """Pure (P, P) Hessian over ``blocks``, no validation and no size guard: vmappable, e.g. over many X.

    ``torch.func.vmap(lambda X: hessian_matrix(model, loss, params, X, Y, blocks=["W_Q"]))(Xs)`` gives one
    block per token configuration.
    """
    names = tuple(blocks)
    P = sum(params[n].numel() for n in names)
    eye = torch.eye(P, dtype=params[names[0]].dtype)
    return hessian_product(model, loss, params, X, Y, names)(eye)


def ggn_matrix(
    model: Model, loss: Loss, params: Mapping[str, Tensor], X: Tensor, Y: Tensor, *, blocks: Sequence[str]
) -> Tensor:
    """Pure (P, P) outer-product Hessian H_o over ``blocks``; vmappable like ``hessian_matrix``."""
    names = tuple(blocks)
    P = sum(params[n].numel() for n in names)
    eye = torch.eye(P, dtype=params[names[0]].dtype)
    return ggn_product(model, loss, params, X, Y, names)(eye)
