"""Directions for loss-landscape pictures: top Hessian eigenvectors and random filter-normalised directions.

Filter normalisation follows Li, Xu, Taylor, Studer & Goldstein (2018): a Gaussian direction with each
filter rescaled to the norm of the same filter of the weights, so that the picture does not depend on
the scale of each layer (a scale-invariant network gives the same picture at every weight scale).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._problem import unflatten
from .checks import check_blocks, check_int, check_params
from .estimators.eigen import lanczos_eigenpairs
from .problem import CurvatureProblem


@dataclass(frozen=True)
class EigenDirections:
    """Top Hessian eigenvectors as direction dicts.

    Attributes:
        directions: k dicts name -> tensor (unit norm over all names together), largest eigenvalue first.
        eigenvalues: (k,) decreasing.
        residuals: (k,) ``||H v - lambda v||`` of each unit eigenvector.
        num_matvecs: Hessian-vector products used.
    """

    directions: list[dict[str, Tensor]]
    eigenvalues: np.ndarray
    residuals: np.ndarray
    num_matvecs: int


def top_eigenvector_directions(
    model: Callable,
    loss: Callable,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    k: int = 2,
    *,
    blocks: Sequence[str] | None = None,
    tol: float = 1e-10,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> EigenDirections:
    """The k largest (algebraic) eigenpairs of the Hessian of ``loss(model(params, X), Y)`` as directions.

    Implicitly restarted Lanczos (ARPACK ``eigsh``) on the matrix-free ``CurvatureProblem(...).H.operator()``,
    from the same seeded start vector as ``hessian.estimators.top_eigenvalues``. Each eigenvector's sign is chosen
    so that the loss decreases along it to first order (``g.v <= 0``).

    Args:
        model, loss, params, X, Y: the problem, as in ``CurvatureProblem``.
        k: number of eigenvectors, 1 <= k < P.
        blocks: parameter names spanned by the directions (None: every floating parameter).
        tol: ARPACK relative accuracy.
        seed: seed of the Lanczos start vector.
        dtype: computation dtype; the directions come back in it.

    Returns:
        ``EigenDirections``.

    Raises:
        ValueError, TypeError: as ``CurvatureProblem``; k out of range.
    """
    problem = CurvatureProblem(model, loss, params, X, Y, blocks, dtype=dtype)
    P = problem.dim
    check_int("k", k)
    if k >= P:
        raise ValueError(
            f"k={k} must be smaller than the number of parameters P={P} for Lanczos; use numpy.linalg.eigh on the "
            "dense Hessian"
        )
    # a Krylov space wider than ARPACK's default 2k + 1 needs fewer products when the top eigenvalues are close
    ncv = min(P, max(2 * k + 1, 20))
    vals, vecs, resid, num_matvecs = lanczos_eigenpairs(
        problem.H.operator(), k, which="LA", tol=tol, seed=seed, ncv=ncv
    )
    g = problem.gradient()[0].detach().numpy()
    vecs = vecs * np.where(vecs.T @ g > 0, -1.0, 1.0)
    directions = [unflatten(problem.names, problem.shapes, torch.as_tensor(vecs[:, i], dtype=dtype)) for i in range(k)]
    return EigenDirections(directions=directions, eigenvalues=vals, residuals=resid, num_matvecs=num_matvecs)


def random_filter_normalized_directions(
    params: Mapping[str, Tensor],
    seed: int,
    *,
    num_directions: int = 2,
    blocks: Sequence[str] | None = None,
    include_vectors: bool = False,
) -> list[dict[str, Tensor]]:
    """Gaussian directions, filter-normalised as in Li et al. (2018).

    A filter is the set of weights feeding one output unit. Weights here multiply from the right
    (``x @ W``, W of shape (..., in, out); an embedding is the product of a one-hot with W), so a filter is
    ``W[..., :, j]``: the direction's entries along the input axis -2 are rescaled, for each output unit j
    (and each head), to the norm of the same slice of the weights. PyTorch's ``nn.Linear`` stores the
    transpose, where these are the rows Li et al. rescale. Vectors (biases, LayerNorm gains) get a zero
    direction, the paper's default; ``include_vectors`` treats each vector as one filter instead.

    Args:
        params: dict name -> tensor, the weights w.
        seed: seed of a private torch.Generator.
        num_directions: how many independent directions.
        blocks: names to move (None: every floating parameter); the others are left out of the dicts.
        include_vectors: rescale 1-D parameters to their norm instead of zeroing them.

    Returns:
        list of ``num_directions`` dicts name -> tensor in the parameters' dtypes.
    """
    params = check_params(params)
    names = check_blocks(blocks, params)
    check_int("num_directions", num_directions)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_directions):
        d = {}
        for n in names:
            w = params[n]
            r = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(w.dtype)
            if w.ndim >= 2:
                d[n] = r * (w.norm(dim=-2, keepdim=True) / r.norm(dim=-2, keepdim=True))
            elif include_vectors and w.ndim == 1:
                d[n] = r * (w.norm() / r.norm())
            else:
                d[n] = torch.zeros_like(w)
        out.append(d)
    return out
