"""A curvature problem described once: ``l(w) = loss(model(params with blocks = w, X), Y)``, checked on creation.

Ask it for a curvature of a kind of ``hessian.kinds.KINDS`` (``problem.H``, ``problem.H_o``, ``problem.H_f`` or
``problem.curvature(kind)``) and that for dense blocks, products, a scipy operator or estimates; ``split()`` gives
the three dense matrices at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property

import torch
from torch import Tensor

from ._problem import Loss, Model, Problem, check_problem, flat_gradient
from .curvature import Curvature
from .dense import DENSE_CHUNK, MAX_PARAMS, HessianSplit, split
from .products import DEFAULT_CHUNK


class CurvatureProblem(Problem):
    """The loss of a functional model over chosen parameter blocks, in one dtype.

    Args:
        model: functional model ``f(params, X)``, e.g. ``SelfAttention(...)`` or ``Transformer()``.
        loss: ``loss(output, Y) -> scalar``, e.g. ``MSELoss()``.
        params: dict name -> tensor; parameters not in ``blocks`` are held fixed.
        X: model input; Y: loss target (floating tensors are cast to ``dtype``).
        blocks: the differentiated parameter names, e.g. ``["blocks.0.attn.W_Q"]``, in the order of the rows
            (row-major vecs, concatenated); None: every floating parameter, in dictionary order.
        dtype: torch.float64 (default) or torch.float32.

    Attributes:
        model, loss, params, X, Y: as given, cast; names: the blocks; shapes: their shapes; dim: P; dtype.
        H, H_o, H_f: the three ``Curvature`` objects (built on first use, products reused afterwards).

    Raises:
        ValueError: unknown, repeated or non-floating block names, non-finite inputs or loss, non-scalar loss,
            a model or loss that fails on the data.
        TypeError: arguments of the wrong type, dtype other than float32/float64.

    Example:
        >>> from hessian import MSELoss, SelfAttention
        >>> layer = SelfAttention(d_model=3, d_k=2, d_v=3)
        >>> X = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> problem = CurvatureProblem(layer, MSELoss(), layer.init(seed=0), X, X, ["W_Q", "W_V"])
        >>> problem.dim, problem.split().H.boundaries
        (15, (0, 6, 15))
        >>> bool(abs(problem.H.trace(method="exact").value - torch.trace(problem.H.dense().matrix)) < 1e-12)
        True
    """

    def __init__(
        self,
        model: Model,
        loss: Loss,
        params: Mapping[str, Tensor],
        X: Tensor,
        Y: Tensor,
        blocks: Sequence[str] | str | None = None,
        *,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__(*check_problem(model, loss, params, X, Y, blocks, dtype))

    def __repr__(self) -> str:
        return f"CurvatureProblem(P={self.dim}, blocks={list(self.names)}, dtype={self.dtype})"

    def curvature(self, kind: str, *, chunk_size: int | None = DEFAULT_CHUNK) -> Curvature:
        """The curvature ``kind`` ("H", "H_o" or "H_f"); ``chunk_size``: vectors per vmap call in its products."""
        return Curvature(self, kind, chunk_size=chunk_size)

    @cached_property
    def H(self) -> Curvature:
        """The Hessian ``d^2 l / dw^2``."""
        return self.curvature("H")

    @cached_property
    def H_o(self) -> Curvature:
        """The outer-product (generalized Gauss-Newton) part ``J^T (d^2 loss / dF^2) J``, ``J = d vec F / dw``."""
        return self.curvature("H_o")

    @cached_property
    def H_f(self) -> Curvature:
        """The functional part ``H - H_o = sum_n (dl/dF_n) d^2 F_n / dw^2``."""
        return self.curvature("H_f")

    def split(self, *, max_params: int = MAX_PARAMS, chunk_size: int = DENSE_CHUNK) -> HessianSplit:
        """``HessianSplit(H, H_o, H_f)`` of dense ``BlockMatrix``: two assemblies, H_f = H - H_o.

        Raises:
            ValueError: P > max_params (before allocating).
        """
        return split(self, max_params=max_params, chunk_size=chunk_size)

    def gradient(self) -> tuple[Tensor, Tensor]:
        """``(g, l)``: the exact (P,) gradient over the blocks (row-major, concatenated) and the loss value."""
        return flat_gradient(self.model, self.loss, self.params, self.X, self.Y, self.names, self.dtype)
