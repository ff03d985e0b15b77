"""Jacobians ``J = d vec F / d w`` of a model's output, exact and dense or matrix-free (float64 by default).

``w`` is the row-major concatenation of the chosen arguments: the input tokens ``"X"`` and/or named
parameter blocks (e.g. ``"blocks.0.attn.W_Q"``); ``vec F`` is the row-major vec of the output. So
``J[n, p] = d F.reshape(-1)[n] / d w[p]``, the layout of the theory note §1.3.

The dense Jacobian is built from exact products with unit vectors (forward mode when there are fewer
arguments than outputs, reverse mode otherwise), vmapped in chunks like ``dense.py``; the operator keeps
the model's pullback, so repeated ``J^T u`` skip the forward pass; ``J v`` is the vjp of the linear map
``u -> J^T u`` (the transpose of a linear map's pullback is the map itself), again with a graph built once.
Its largest singular value comes from Lanczos (``top_eigenvalues``) on the smaller of ``J^T J`` and ``J J^T``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import prod

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor
from torch.func import jvp, vjp

from ._problem import Model, _cast, flatten, unflatten
from .checks import check_finite, check_float_dtype, check_int, check_params
from .dense import MAX_PARAMS
from .estimators import Estimate, top_eigenvalues
from .operators import CurvatureOperator
from .products import DEFAULT_CHUNK, batched

#: name of the model input among the differentiated arguments
INPUT = "X"
#: default largest number of entries of a dense Jacobian: the Hessian core's limit, 4096^2 float64 = 128 MiB
MAX_ENTRIES = MAX_PARAMS**2


@dataclass(frozen=True)
class _Problem:
    """A checked Jacobian problem: ``w -> vec model(params with blocks = w, X)`` at ``w0``."""

    fn: Callable[[Tensor], Tensor]
    w0: Tensor
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]

    @property
    def dim(self) -> int:
        return self.w0.numel()

    @property
    def out_dim(self) -> int:
        return prod(self.out_shape)


def _check_wrt(wrt: object, params: Mapping[str, Tensor], X: Tensor) -> tuple[str, ...]:
    names = (wrt,) if isinstance(wrt, str) else wrt
    if not isinstance(names, Sequence):
        raise TypeError(f"wrt must be a str or a sequence of names ('X' or parameter names), got {type(wrt).__name__}")
    if not names:
        raise ValueError(f"wrt must name at least one argument ('X' or a parameter), got {wrt!r}")
    names = tuple(names)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"wrt must contain str names, got {type(name).__name__} {name!r}")
        if name == INPUT:
            if INPUT in params:
                raise ValueError("wrt: 'X' is ambiguous, params also holds a parameter named 'X'; rename it")
            if not X.is_floating_point():
                raise ValueError(
                    f"wrt: cannot differentiate with respect to X of dtype {X.dtype} (e.g. token ids); drop 'X'"
                )
        elif name not in params:
            raise ValueError(f"wrt: no parameter named {name!r}; available: 'X' and {sorted(params)}")
        elif not params[name].is_floating_point():
            raise ValueError(f"wrt: parameter {name!r} has dtype {params[name].dtype}, expected a floating dtype")
    if len(set(names)) != len(names):
        raise ValueError(f"wrt must not repeat a name, got {list(names)}")
    return names


def _make_problem(model: object, params: object, X: object, wrt: object, dtype: object) -> _Problem:
    if not callable(model):
        raise TypeError(f"model must be a callable f(params, X), got {type(model).__name__}")
    dtype = check_float_dtype("dtype", dtype)
    params = check_params(params)
    if not isinstance(X, Tensor):
        raise TypeError(f"X must be a torch.Tensor, got {type(X).__name__}")
    check_finite("X", X)
    names = _check_wrt(wrt, params, X)
    params = {k: _cast(v, dtype) for k, v in params.items()}
    X = _cast(X, dtype)
    with torch.no_grad():
        try:
            out = model(params, X)
        except (RuntimeError, IndexError) as err:
            raise ValueError(f"model(params, X) failed for X of shape {tuple(X.shape)}: {err}") from err
    if not isinstance(out, Tensor) or not out.is_floating_point():
        raise TypeError(
            f"model must return a floating torch.Tensor, got {type(out).__name__} {getattr(out, 'dtype', '')}"
        )
    check_finite("model(params, X)", out)
    args = {INPUT: X, **params}
    shapes = tuple(tuple(args[n].shape) for n in names)

    def fn(w: Tensor) -> Tensor:
        merged = {**args, **unflatten(names, shapes, w)}
        x = merged.pop(INPUT)
        return model(merged, x).reshape(-1)

    return _Problem(fn, flatten(args, names), names, shapes, tuple(out.shape))


def check_jacobian_size(N: int, P: int, max_entries: int) -> None:
    """Refuse an (N, P) dense Jacobian above ``max_entries`` entries, before allocating."""
    check_int("max_entries", max_entries)
    if N * P > max_entries:
        raise ValueError(
            f"dense Jacobian of {N} outputs by P={P} arguments needs an {N}x{P} matrix ({N * P * 8 / 2**20:.1f} MiB in "
            f"float64), above the limit max_entries={max_entries}; choose fewer blocks, raise max_entries, or use the "
            "matrix-free jacobian_operator"
        )


@dataclass(frozen=True)
class BlockJacobian:
    """Dense (N, P) Jacobian whose columns are the row-major vecs of named arguments, in order.

    Attributes:
        matrix: (N, P) tensor, ``N = prod(out_shape)``.
        names: argument names ("X" or parameter names), in column order.
        shapes: their shapes; block ``names[i]`` spans columns ``boundaries[i]:boundaries[i + 1]``.
        out_shape: shape of the model output (rows are its row-major vec).

    Example:
        ``jacobian(layer, params, X, wrt=("X", "W_V")).block("X")`` is the (N, numel X) block.
    """

    matrix: Tensor
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]

    @property
    def boundaries(self) -> tuple[int, ...]:
        """Column offsets (n_blocks + 1,), from 0 to P."""
        out = [0]
        for shape in self.shapes:
            out.append(out[-1] + prod(shape))
        return tuple(out)

    def block(self, name: str) -> Tensor:
        """The (N, numel) columns of one argument."""
        if name not in self.names:
            raise ValueError(f"no block named {name!r}; blocks are {list(self.names)}")
        i = self.names.index(name)
        b = self.boundaries
        return self.matrix[:, b[i] : b[i + 1]]

    @property
    def blocks(self) -> dict[str, Tensor]:
        """Every block as ``{name: (N, numel) tensor}``."""
        return {n: self.block(n) for n in self.names}


def jacobian(
    model: Model,
    params: Mapping[str, Tensor],
    X: Tensor,
    wrt: str | Sequence[str] = (INPUT,),
    *,
    dtype: torch.dtype = torch.float64,
    max_entries: int = MAX_ENTRIES,
    chunk_size: int = 256,
) -> BlockJacobian:
    """Exact dense Jacobian ``d vec model(params, X) / d w`` over the arguments ``wrt``.

    Args:
        model: functional model ``f(params, X)``, e.g. ``SelfAttention(...)``.
        params: dict name -> tensor; parameters not in ``wrt`` are held fixed.
        X: model input (floating data is cast to ``dtype``).
        wrt: "X" and/or parameter names, e.g. ``("X", "blocks.0.attn.W_Q")``; columns in this order.
        dtype: float64 (default) or float32.
        max_entries: refuse N * P above this, before allocating.
        chunk_size: unit vectors per vmap call.

    Returns:
        ``BlockJacobian`` with ``.matrix`` (N, P), ``.block(name)`` (N, numel), row-major vec on both sides.

    Raises:
        ValueError: unknown, repeated or non-floating names, "X" with integer X, non-finite inputs or output,
            N * P > max_entries.
        TypeError: wrong argument types.
    """
    problem = _make_problem(model, params, X, wrt, dtype)
    N, P = problem.out_dim, problem.dim
    check_jacobian_size(N, P, max_entries)
    check_int("chunk_size", chunk_size)
    if P < N:
        # P forward products J e_p are the columns (reverse mode, with one shared forward pass, wins at P = N)
        one = lambda v: jvp(problem.fn, (problem.w0,), (v,))[1]
        matrix = batched(one, torch.eye(P, dtype=dtype), chunk_size).T
    else:
        _, pullback = vjp(problem.fn, problem.w0)
        matrix = batched(lambda u: pullback(u)[0], torch.eye(N, dtype=dtype), chunk_size)
    return BlockJacobian(matrix.contiguous(), problem.names, problem.shapes, problem.out_shape)


class JacobianOperator(LinearOperator):
    """(N, P) Jacobian ``J = d vec F / d w`` as a scipy LinearOperator: ``J^T u`` by vjp, ``J v`` by vjp of that.

    Attributes:
        names, shapes: the differentiated arguments (column layout); out_shape: shape of F (row layout).
        torch_matmat: (P,) or (k, P) -> (N,) or (k, N), the torch ``J v`` (rows of V are vectors).
        torch_rmatmat: (N,) or (k, N) -> (P,) or (k, P), the torch ``J^T u``.
    """

    def __init__(self, problem: _Problem, chunk_size: int | None):
        self.names, self.shapes, self.out_shape = problem.names, problem.shapes, problem.out_shape
        N, P = problem.out_dim, problem.dim
        self._torch_dtype = problem.w0.dtype
        _, pullback = vjp(problem.fn, problem.w0)
        transpose = lambda u: pullback(u)[0]
        # J v as the vjp of the linear map u -> J^T u: exact, its graph is built once, and it measured 3.7x
        # faster than a jvp (which reruns the forward pass) for one head at L = 128, d = 64
        _, pushforward = vjp(transpose, problem.w0.new_zeros(N))
        self.torch_matmat = self._checked(lambda v: pushforward(v)[0], P, N, chunk_size)
        self.torch_rmatmat = self._checked(transpose, N, P, chunk_size)
        super().__init__(dtype=np.float64 if self._torch_dtype == torch.float64 else np.float32, shape=(N, P))

    def _checked(
        self, one: Callable[[Tensor], Tensor], n: int, m: int, chunk_size: int | None
    ) -> Callable[[Tensor], Tensor]:
        def apply(V: Tensor) -> Tensor:
            if not isinstance(V, Tensor):
                raise TypeError(f"V must be a torch.Tensor, got {type(V).__name__}")
            if V.ndim not in (1, 2) or V.shape[-1] != n:
                raise ValueError(f"V must have shape ({n},) or (k, {n}), got {tuple(V.shape)}")
            if V.ndim == 2 and V.shape[0] == 0:
                return V.new_zeros(0, m)
            return batched(one, V.to(self._torch_dtype), chunk_size)

        return apply

    def _numpy(self, torch_fn: Callable[[Tensor], Tensor], X: np.ndarray) -> np.ndarray:
        V = torch.as_tensor(np.ascontiguousarray(np.asarray(X).T), dtype=self._torch_dtype)
        return torch_fn(V).numpy().T

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._numpy(self.torch_matmat, np.ravel(x))

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self._numpy(self.torch_matmat, X)

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._numpy(self.torch_rmatmat, np.ravel(x))

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self._numpy(self.torch_rmatmat, X)

    def gram(self, side: str = "auto") -> CurvatureOperator:
        """Symmetric PSD ``J^T J`` (P, P) (side "input") or ``J J^T`` (N, N) (side "output"); "auto": the smaller.

        Both have the squared singular values of J as their non-zero eigenvalues.
        """
        N, P = self.shape
        if side == "auto":
            side = "input" if P <= N else "output"
        if side == "input":
            product = lambda V: self.torch_rmatmat(self.torch_matmat(V))  # noqa: E731
            return CurvatureOperator(product, self.names, self.shapes, self._torch_dtype)
        if side == "output":
            product = lambda U: self.torch_matmat(self.torch_rmatmat(U))  # noqa: E731
            return CurvatureOperator(product, ("output",), (self.out_shape,), self._torch_dtype)
        raise ValueError(f"side must be 'auto', 'input' or 'output', got {side!r}")

    def spectral_norm(self, *, tol: float = 1e-10, seed: int = 0, maxiter: int | None = None) -> Estimate:
        """Largest singular value ``||J||_2`` by Lanczos on the smaller Gram operator.

        Args:
            tol: ARPACK relative tolerance on the top eigenvalue of the Gram operator.
            seed: seed of the Lanczos start vector.
            maxiter: ARPACK iteration limit.

        Returns:
            Estimate: value sigma_max; stderr ``r / sigma`` with r the Ritz residual of the Gram operator, a bound
            on the distance to a singular value of J (``|sqrt(lam) - sqrt(mu)| <= |lam - mu| / sqrt(lam)``);
            num_matvecs counts Gram products (each one jvp and one vjp).

        Raises:
            ValueError: the smaller dimension is 1 (Lanczos needs k < n; take the dense ``jacobian``).
        """
        est = top_eigenvalues(self.gram(), k=1, which="LA", tol=tol, seed=seed, maxiter=maxiter)
        lam = max(float(est.value[0]), 0.0)
        sigma = np.sqrt(lam)
        stderr = float(est.stderr[0]) / sigma if sigma > 0 else np.sqrt(float(est.stderr[0]))
        return Estimate(float(sigma), float(stderr), est.num_matvecs)


def jacobian_operator(
    model: Model,
    params: Mapping[str, Tensor],
    X: Tensor,
    wrt: str | Sequence[str] = (INPUT,),
    *,
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> JacobianOperator:
    """Matrix-free Jacobian ``d vec model(params, X) / d w`` over ``wrt`` as a scipy LinearOperator.

    Args:
        model: functional model ``f(params, X)``.
        params: dict name -> tensor; parameters not in ``wrt`` are held fixed.
        X: model input.
        wrt: "X" and/or parameter names; the columns are their row-major vecs, in order.
        dtype: torch.float64 (default) or torch.float32; the operator's numpy dtype follows.
        chunk_size: vectors per vmap call in the batched products (None: all at once).

    Returns:
        ``JacobianOperator`` of shape (N, P): ``op @ v``, ``op.T @ u``, ``op.matmat``, ``op.torch_matmat``,
        ``op.torch_rmatmat``, ``op.gram()``, ``op.spectral_norm()``.

    Raises:
        ValueError, TypeError: as ``jacobian``.

    Example:
        >>> from hessian.models import SelfAttention
        >>> layer = SelfAttention(d_model=3)
        >>> op = jacobian_operator(layer, layer.init(seed=0), torch.randn(4, 3, dtype=torch.float64))
        >>> op.shape, float(op.spectral_norm()) > 0
        ((12, 12), True)
    """
    if chunk_size is not None:
        check_int("chunk_size", chunk_size)
    return JacobianOperator(_make_problem(model, params, X, wrt, dtype), chunk_size)
