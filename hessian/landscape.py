"""Loss landscapes: the loss on a 1-D or 2-D grid of points ``w + sum_k c_k d_k`` around parameters ``w``.

Every grid point is a full evaluation of the loss. Points are evaluated in chunks: the chunk's parameters
are stacked along a new leading axis and ``torch.func.vmap`` runs the loss once over the stack, so each
matrix product of the model becomes a batched product over grid points (no Python loop over points).
The chunk size is bounded by a memory limit, from the bytes one evaluation allocates (measured once at
``w``), and a chunk that cannot fit is refused before anything is allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.func import vmap
from torch.utils._python_dispatch import TorchDispatchMode

from ._problem import flatten
from .checks import check_finite, check_int, check_params
from .problem import CurvatureProblem

#: default memory limit of one chunk of grid points (bytes)
MAX_MEMORY = 2**30
#: default allocations of one chunk. Reference transformer in float32 (17 MiB per point,
#: benchmarks/bench_loss_landscape.py): on one thread 1-4 points per chunk were fastest and 32 points 1.4x
#: slower (activations leave the cache); with two threads on a loaded machine every operation's thread
#: barrier costs a time slice, and 32 points were 11x faster than 1. About 8 points is the compromise.
CACHE_BYTES = 128 * 2**20

Direction = Mapping[str, Tensor]


@dataclass(frozen=True)
class Landscape:
    """Loss values on a grid.

    Attributes:
        axes: one (n_k,) array of offsets per direction.
        values: (n_1,) for one direction, (n_1, n_2) for two: ``values[i, j]`` is the loss at
            ``w + axes[0][i] d_1 + axes[1][j] d_2``.
        loss0: the loss at ``w`` itself.
        chunk_size: grid points per vmap call.
    """

    axes: tuple[np.ndarray, ...]
    values: np.ndarray
    loss0: float
    chunk_size: int


class _AllocationCounter(TorchDispatchMode):
    """Sums the bytes of every new storage an operation returns (views are free): an upper bound of the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {
            t.untyped_storage().data_ptr()
            for t in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(t, Tensor)
        }
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.bytes += t.untyped_storage().nbytes()
        return out


def check_directions(directions: object, params: Mapping[str, Tensor]) -> list[dict[str, Tensor]]:
    """Validate one direction dict or a sequence of them; return them cast to the parameters' dtypes.

    Raises:
        TypeError: not a mapping of tensors.
        ValueError: no direction, an unknown name, a shape mismatch, a non-floating parameter, non-finite entries.
    """
    if isinstance(directions, Mapping):
        directions = [directions]
    if not isinstance(directions, Sequence) or isinstance(directions, str):
        raise TypeError(
            f"directions must be a dict name -> tensor or a sequence of them, got {type(directions).__name__}"
        )
    if not directions:
        raise ValueError("directions must hold at least one direction, got an empty sequence")
    out = []
    for k, d in enumerate(directions):
        if not isinstance(d, Mapping) or not d:
            raise TypeError(
                f"directions[{k}] must be a non-empty dict name -> tensor, got {type(d).__name__} {d!r:.60}"
            )
        checked = {}
        for name, t in d.items():
            if name not in params:
                raise ValueError(
                    f"directions[{k}] has unknown parameter name {name!r}; parameters are {sorted(params)}"
                )
            if not isinstance(t, Tensor):
                raise TypeError(f"directions[{k}][{name!r}] must be a torch.Tensor, got {type(t).__name__}")
            p = params[name]
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(
                    f"directions[{k}][{name!r}] must have the parameter's shape {tuple(p.shape)}, got {tuple(t.shape)}"
                )
            if not p.is_floating_point():
                raise ValueError(
                    f"directions[{k}][{name!r}]: parameter {name!r} has dtype {p.dtype}, expected a floating dtype"
                )
            check_finite(f"directions[{k}][{name!r}]", t)
            checked[name] = t.detach().to(p.dtype)
        out.append(checked)
    return out


def _check_grid(grid: object, num_directions: int) -> tuple[np.ndarray, ...]:
    """One 1-D finite axis per direction; a bare array is the axis of a single direction."""
    if num_directions not in (1, 2):
        raise ValueError(f"directions must hold 1 or 2 directions (a line or a plane), got {num_directions}")
    if isinstance(grid, (np.ndarray, Tensor)) and np.ndim(grid) == 1:
        grid = [grid]
    if not isinstance(grid, (Sequence, np.ndarray, Tensor)) or isinstance(grid, str):
        raise TypeError(
            "grid must be a 1-D array (one direction) or a sequence of 1-D arrays (one per direction), got "
            f"{type(grid).__name__}"
        )
    if len(grid) != num_directions:
        raise ValueError(f"grid must have one axis per direction: got {len(grid)} axes for {num_directions} directions")
    axes = []
    for k, a in enumerate(grid):
        a = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"grid axis {k} must be a non-empty 1-D array of offsets, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"grid axis {k} must be finite, got {int((~np.isfinite(a)).sum())} non-finite offsets")
        axes.append(a)
    return tuple(axes)


def grid_coefficients(axes: Sequence[np.ndarray]) -> np.ndarray:
    """(N, K) offsets of every grid point, row-major over the outer product of the axes (N = prod n_k)."""
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def bytes_per_point(
    loss_fn: Callable[[dict[str, Tensor]], Tensor], params: Mapping[str, Tensor], names: Sequence[str]
) -> tuple[int, Tensor]:
    """(bytes one grid point needs, loss at ``params``): the perturbed parameters plus every tensor one
    evaluation allocates."""
    counter = _AllocationCounter()
    with torch.no_grad(), counter:
        value = loss_fn(dict(params))
    return counter.bytes + sum(params[n].numel() * params[n].element_size() for n in names), value


def loss_landscape(
    loss_fn: Callable[[dict[str, Tensor]], Tensor],
    params: Mapping[str, Tensor],
    directions: Direction | Sequence[Direction],
    grid: object,
    *,
    chunk_size: int | None = None,
    max_memory: int = MAX_MEMORY,
    progress: bool = False,
) -> Landscape:
    """The loss on a line or a plane through ``params``.

    ``values[i] = loss_fn(w + t_i d)`` (one direction) or ``values[i, j] = loss_fn(w + a_i d_1 + b_j d_2)``.

    Args:
        loss_fn: ``loss_fn(params) -> 0-dim tensor``, written with torch operations so ``torch.func.vmap`` can
            batch it (e.g. ``lambda p: loss(model(p, X), Y)``).
        params: dict name -> tensor, the centre ``w``; computations run in its dtype.
        directions: a dict name -> tensor (a line) or a sequence of one or two such dicts. Names absent
            from a direction are not moved.
        grid: (n,) offsets for one direction, or a sequence of one (n_k,) axis per direction.
        chunk_size: grid points per vmap call (None: as many as fit in ``CACHE_BYTES``, at least one).
        max_memory: bytes one chunk may use (perturbed parameters plus the allocations of its evaluations).
        progress: tqdm bar over chunks.

    Returns:
        ``Landscape`` with the axes, the (n_1,) or (n_1, n_2) loss values, the loss at ``w`` and the chunk size.

    Raises:
        TypeError: wrong argument types.
        ValueError: bad directions (unknown name, shape, non-finite), bad grid, a non-scalar loss, or a chunk
            (even a single point) that needs more than ``max_memory`` bytes.

    Example:
        >>> w = {"x": torch.zeros(2, dtype=torch.float64)}
        >>> land = loss_landscape(lambda p: (p["x"] ** 2).sum(), w, {"x": torch.ones(2)}, np.array([-1.0, 0.0, 2.0]))
        >>> land.values.tolist()
        [2.0, 0.0, 8.0]
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable loss_fn(params) -> scalar tensor, got {type(loss_fn).__name__}")
    params = check_params(params)
    dirs = check_directions(directions, params)
    axes = _check_grid(grid, len(dirs))
    check_int("max_memory", max_memory)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size)
    names = sorted({n for d in dirs for n in d}, key=list(params).index)
    per_point, value = bytes_per_point(loss_fn, params, names)
    if not isinstance(value, Tensor) or value.ndim != 0:
        raise ValueError(
            "loss_fn must return a 0-dim tensor, got "
            f"{tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__}"
        )
    coeffs = grid_coefficients(axes)
    N = len(coeffs)
    fit = max_memory // per_point
    if chunk_size is None:
        if fit < 1:
            raise ValueError(
                f"one grid point needs {per_point} bytes ({per_point / 2**20:.1f} MiB), above "
                f"max_memory={max_memory} bytes; "
                "raise max_memory or evaluate a smaller problem"
            )
        chunk_size = int(min(fit, max(1, CACHE_BYTES // per_point), N))
    elif chunk_size * per_point > max_memory:
        raise ValueError(
            f"chunk_size={chunk_size} grid points need {chunk_size * per_point} bytes "
            f"({chunk_size * per_point / 2**20:.1f} MiB), "
            f"above max_memory={max_memory} bytes; use chunk_size <= {fit} or raise max_memory"
        )
    out = evaluate_points(
        loss_fn, params, dirs, torch.as_tensor(coeffs, dtype=params[names[0]].dtype), chunk_size, progress=progress
    )
    values = out.detach().cpu().numpy().astype(np.float64).reshape(tuple(len(a) for a in axes))
    return Landscape(axes=axes, values=values, loss0=float(value), chunk_size=chunk_size)


def evaluate_points(
    loss_fn: Callable[[dict[str, Tensor]], Tensor],
    params: Mapping[str, Tensor],
    directions: Sequence[Mapping[str, Tensor]],
    coeffs: Tensor,
    chunk_size: int,
    *,
    progress: bool = False,
) -> Tensor:
    """Pure kernel: (N,) losses at ``w + sum_k coeffs[:, k] d_k``, ``chunk_size`` points per vmap call (no checks)."""
    from tqdm.auto import tqdm

    # a parameter no direction moves stays unbatched (e.g. the zeroed biases of filter-normalised directions):
    # its operations then run once per chunk instead of once per point
    names = [n for n in params if any(n in d and bool(d[n].any()) for d in directions)]
    # (K, numel) per moved parameter: a chunk's stacked parameters are then one small matrix product
    flat = {
        n: torch.stack([d[n].reshape(-1) if n in d else torch.zeros_like(params[n]).reshape(-1) for d in directions])
        for n in names
    }
    fixed = {n: p for n, p in params.items() if n not in flat}
    if not names:  # every direction is zero: the landscape is flat
        with torch.no_grad():
            return loss_fn(dict(params)).expand(len(coeffs)).clone()

    def at(moved: dict[str, Tensor]) -> Tensor:
        return loss_fn({**fixed, **moved})

    batched = vmap(at)
    out = []
    with torch.no_grad():
        for c in tqdm(coeffs.split(chunk_size), desc="grid chunks", disable=not progress, leave=False):
            moved = {
                n: torch.addmm(params[n].reshape(1, -1), c.to(flat[n].dtype), flat[n]).reshape(len(c), *params[n].shape)
                for n in names
            }
            out.append(batched(moved))
    return torch.cat(out)


@dataclass(frozen=True)
class QuadraticModel:
    """Second-order Taylor model ``q(c) = L0 + sum_k c_k g.d_k + 1/2 sum_kl c_k c_l d_k^T H d_l`` on a grid.

    Attributes:
        axes: one (n_k,) array per direction, as in ``Landscape``.
        values: (n_1,) or (n_1, n_2) model values.
        loss0: L0, the loss at ``w``.
        slopes: (K,) directional derivatives ``g.d_k``.
        curvature: (K, K) the Hessian restricted to the directions, ``d_k^T H d_l``.
    """

    axes: tuple[np.ndarray, ...]
    values: np.ndarray
    loss0: float
    slopes: np.ndarray
    curvature: np.ndarray


def quadratic_model(
    model: Callable,
    loss: Callable,
    params: Mapping[str, Tensor],
    X: Tensor,
    Y: Tensor,
    directions: Direction | Sequence[Direction],
    grid: object,
    *,
    dtype: torch.dtype = torch.float64,
) -> QuadraticModel:
    """The second-order model of ``l(w) = loss(model(w, X), Y)`` on the grid of ``loss_landscape``.

    The gradient is exact (autograd) and ``d_k^T H d_l`` comes from exact Hessian-vector products
    (``CurvatureProblem(...).H.matmat``), so ``l(w + t d) - q(t) = O(t^3)``.

    Args:
        model, loss, params, X, Y: the problem, as in ``CurvatureProblem``.
        directions: one dict name -> tensor, or a sequence of one or two.
        grid: as in ``loss_landscape``.
        dtype: computation dtype (float64 default).

    Returns:
        ``QuadraticModel`` with the values on the grid and the coefficients.

    Raises:
        ValueError, TypeError: as ``loss_landscape`` and ``CurvatureProblem``.
    """
    params = check_params(params)
    dirs = check_directions(directions, params)
    axes = _check_grid(grid, len(dirs))
    names = [n for n in params if any(n in d for d in dirs)]
    problem = CurvatureProblem(model, loss, params, X, Y, names, dtype=dtype)
    full = [{n: d.get(n, torch.zeros_like(params[n])).to(dtype) for n in names} for d in dirs]
    V = torch.stack([flatten(d, tuple(names)) for d in full])
    g, value = problem.gradient()
    slopes = (V @ g).detach().numpy()
    HV = problem.H.matmat(V.T).T
    curvature = (V @ HV.T).detach().numpy()
    curvature = (curvature + curvature.T) / 2  # H is symmetric; average away round-off
    c = grid_coefficients(axes)
    q = float(value) + c @ slopes + 0.5 * np.einsum("nk,kl,nl->n", c, curvature, c)
    return QuadraticModel(
        axes=axes, values=q.reshape(tuple(len(a) for a in axes)), loss0=float(value), slopes=slopes, curvature=curvature
    )
