"""One curvature (H, H_o or H_f) of a checked problem: its products, dense blocks, operator and estimates.

The three kinds share everything but the product (``products.PRODUCTS``), so one class serves them all, as one
base class serves curvlinops' operators. Products are built once per ``Curvature`` (the gradient graph and the
model's pullback are reused by every call); the estimates run on ``operator()`` and are the functions of
``hessian.estimators`` and ``hessian.conditioning``, which take any operator or matrix.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from ._problem import Problem
from .block_matrix import BlockMatrix
from .checks import check_int
from .conditioning import (
    Conditioning,
    ExtremeEigenvalues,
    NegativeMass,
    condition_number,
    extreme_eigenvalues,
    negative_mass,
)
from .dense import DENSE_CHUNK, MAX_PARAMS, dense_matrix
from .estimators import Estimate, SpectralDensity, diagonal, frobenius_norm, spectral_density, top_eigenvalues, trace
from .kinds import check_kind
from .operators import CurvatureOperator, curvature_operator
from .products import DEFAULT_CHUNK, Product, product_of


class Curvature:
    """The curvature ``kind`` of ``l(w) = loss(model(params with blocks = w, X), Y)``.

    Get it from a problem: ``CurvatureProblem(...).H``, ``.H_o``, ``.H_f`` or ``.curvature(kind, chunk_size=...)``.

    Args:
        problem: the checked problem (a ``CurvatureProblem``).
        kind: "H" (Hessian), "H_o" (outer-product / Gauss-Newton part, PSD for convex losses) or
            "H_f" (functional part, H - H_o); ``hessian.kinds``.
        chunk_size: vectors per vmap call in ``matmat`` and in the operator (None: all at once). The default 8 was
            the fastest on the reference transformer (2 cores): larger batches leave the cache.

    Attributes:
        problem, kind, chunk_size: as given; names, shapes, dim (P), dtype: those of the problem's blocks.

    Example:
        >>> from hessian import CurvatureProblem, MSELoss, SelfAttention
        >>> layer = SelfAttention(d_model=3, d_k=2, d_v=3)
        >>> X = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> H_o = CurvatureProblem(layer, MSELoss(), layer.init(seed=0), X, X, ["W_V"]).H_o
        >>> H_o.dim, H_o.dense().matrix.shape, H_o.matmat(torch.eye(9)).shape
        (9, torch.Size([9, 9]), torch.Size([9, 9]))
    """

    def __init__(self, problem: Problem, kind: str, *, chunk_size: int | None = DEFAULT_CHUNK):
        if not isinstance(problem, Problem):
            raise TypeError(f"problem must be a CurvatureProblem, got {type(problem).__name__}")
        self.problem = problem
        self.kind = check_kind("kind", kind)
        self.chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size)

    @property
    def names(self) -> tuple[str, ...]:
        return self.problem.names

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return self.problem.shapes

    @property
    def dim(self) -> int:
        """P, the number of differentiated entries."""
        return self.problem.dim

    @property
    def dtype(self) -> torch.dtype:
        return self.problem.dtype

    def __repr__(self) -> str:
        return f"Curvature({self.kind!r}, P={self.dim}, blocks={list(self.names)}, dtype={self.dtype})"

    @cached_property
    def _product(self) -> Product:
        return product_of(self.problem, self.kind)

    def _vectors(self, name: str, V: object, ndim: int) -> Tensor:
        if not isinstance(V, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(V).__name__}")
        if V.ndim != ndim or V.shape[0] != self.dim:
            want = f"({self.dim},)" if ndim == 1 else f"({self.dim}, k)"
            raise ValueError(f"{name} must have shape {want}, got {tuple(V.shape)}")
        return V.to(self.dtype)

    def matvec(self, v: Tensor) -> Tensor:
        """``M v`` for a (P,) tensor v in the row-major concatenation of the blocks (cast to the problem dtype)."""
        return self._product(self._vectors("v", v, 1), self.chunk_size)

    def matmat(self, V: Tensor) -> Tensor:
        """``M V`` for a (P, k) tensor: the k columns are multiplied at once, ``chunk_size`` per vmap call."""
        V = self._vectors("V", V, 2)
        if V.shape[1] == 0:
            return V.clone()
        # the products take the vectors as rows: row i of the result is M times column i of V
        return self._product(V.T, self.chunk_size).T

    def dense(self, *, max_params: int = MAX_PARAMS, chunk_size: int = DENSE_CHUNK) -> BlockMatrix:
        """The exact (P, P) matrix with its blocks (``.matrix``, ``.block(a, b)``, ``.boundaries``).

        Columns are products with the unit vectors, ``chunk_size`` per vmap call; H_f is assembled as H - H_o.

        Raises:
            ValueError: P > max_params (before allocating).
        """
        return dense_matrix(self.problem, self.kind, max_params=max_params, chunk_size=chunk_size)

    @cached_property
    def _operator(self) -> CurvatureOperator:
        return curvature_operator(self.problem, self._product, self.chunk_size)

    def operator(self) -> CurvatureOperator:
        """The (P, P) scipy ``LinearOperator`` (float64, or float32 for a float32 problem): ``eigsh``, ``cg``, ...

        Its ``.torch_matmat`` maps (P,) or (k, P) tensors (rows are vectors); ``.names``, ``.shapes`` the blocks.
        """
        return self._operator

    def trace(self, **options) -> Estimate:
        """``hessian.estimators.trace`` of this curvature (method "hutchpp", "hutchinson" or "exact", ...)."""
        return trace(self.operator(), **options)

    def frobenius_norm(self, **options) -> Estimate:
        """``hessian.estimators.frobenius_norm`` (method "auto", "exact" or "hutchinson", num_samples, seed)."""
        return frobenius_norm(self.operator(), **options)

    def diagonal(self, **options) -> Estimate:
        """``hessian.estimators.diagonal`` (method "exact" or "hutchinson", num_samples, seed)."""
        return diagonal(self.operator(), **options)

    def top_eigenvalues(self, k: int = 1, **options) -> Estimate:
        """``hessian.estimators.top_eigenvalues``: the k extreme eigenvalues by Lanczos (which, tol, seed)."""
        return top_eigenvalues(self.operator(), k, **options)

    def spectral_density(self, **options) -> SpectralDensity:
        """``hessian.estimators.spectral_density`` by stochastic Lanczos quadrature (num_probes, num_steps, ...)."""
        return spectral_density(self.operator(), **options)

    def extreme_eigenvalues(self, k: int = 1, which: str = "both", **options) -> ExtremeEigenvalues:
        """``hessian.conditioning.extreme_eigenvalues`` (dense eigh up to ``dense_threshold``, else Lanczos)."""
        return extreme_eigenvalues(self.operator(), k, which, **options)

    def condition_number(self, **options) -> Conditioning:
        """``hessian.conditioning.condition_number``: kappa over the numerical range and the rank."""
        return condition_number(self.operator(), **options)

    def negative_mass(self, **options) -> NegativeMass:
        """``hessian.conditioning.negative_mass``: the share of negative eigenvalues and of negative |lambda|."""
        return negative_mass(self.operator(), **options)
