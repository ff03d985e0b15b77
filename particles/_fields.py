"""The velocity field of one run: parameters, kernels and scratch buffers.

A field packs states into its own layout and offers the operations the
steppers need: ``velocity``, ``retract``, ``axpy`` and ``rk4_combine``, and, where
``fused_euler`` is set, ``euler`` (whole steps of the authors' scheme). Two kinds:

- ``FusedField`` (d <= 8): Numba kernels that fuse logits, exponentials and sums per pair.
- ``DenseField`` (d > 8, in ``_dense_field``): the logits and weighted sums are matrix
  products in torch (BLAS), which wins once the d-dimensional inner products dominate; the
  exponentials run in one Numba pass between them, on states in the row layout (B, n, d).

``make_field`` chooses each system's arithmetic from its own parameters alone; a batch
whose systems choose differently runs as a ``GroupedField`` of one field per choice.
"""

import numba
import numpy as np
import torch

from . import _kernels
from ._dense_field import BLOCKED_MIN_N, DenseField, span_basis, span_pays
from ._field_base import MAX_FUSED_D, FieldBase
from ._steppers import Euler

# SA subtracts from the logits of system b a bound c_b = beta |A_b|_2 on all of them (one
# exponential per pair, no max pass) unless a row's largest logit can lie too far below
# c_b: then exact row maxima. Row i holds the logit beta x_i^T A x_i >= beta lambda_min,
# lambda_min the lowest eigenvalue of (A + A^T) / 2, so c_b minus any row maximum is at
# most the gap beta (|A|_2 - lambda_min): 0 for A = I at any beta, 2 beta |A|_2 for
# A = -I. Past _MAX_GAP the row maxima are taken. With the gap below it, a row's largest
# weight is at least e^{-gap}; weights that matter to the working precision (above eps
# times the largest) and their products with coordinates down to 1e-4 then stay normal
# numbers: float32: e^{-60} 2^{-24} 1e-4 = 5e-38 > 2^{-126} = 1.2e-38 (the smallest normal;
# exponentials reach it at -87.3); float64: e^{-600} 2^{-53} 1e-4 = 3e-281 > 2.2e-308,
# and the kernels' exponential clamps at -708.
_MAX_GAP = {np.dtype(np.float64): 600.0, np.dtype(np.float32): 60.0}
# Tasks per field evaluation to aim for, so that small batches still use every core.
_MIN_TASKS = 16
_MAX_CHUNK_PAIRS = 8192


def make_field(*, A, V, beta, usa, batch, n, dtype, d=None, x0=None, evaluations=None):
    """The field of the dynamics for interaction matrix A = Q^T K and value matrix V.

    Args:
        A, V: (d, d) or (batch, d, d) float64, or None for the identity (then never formed
            for d > 8, where it would cost more than a short run's steps).
        beta: inverse temperature.
        usa: True for USA (Z_i = n), False for SA.
        batch, n: systems and tokens.
        d: the dimension (needed only where A and V are both None).
        dtype: dtype of the state.
        x0: ([batch,] n, d) initial state, or None. With V = I the tokens never leave the
            span of their initial positions, so for d >= 2 n the field may run in an
            orthonormal basis of that span (see ``_dense_field``): then it may only be
            used for states of this run.
        evaluations: how many times the run evaluates the field, where known: the span is
            taken only where that many evaluations repay its setup (``span_pays``).

    Every choice of arithmetic (shift or row maxima, symmetric kernels, the span, identity
    products) is made per system from its own parameters, so a system gives the same bits
    alone or in any batch; systems whose choices differ run as separate groups.
    """
    dtype = np.dtype(dtype)
    d = next(M.shape[-1] for M in (A, V) if M is not None) if d is None else d
    dense = d > MAX_FUSED_D
    if not dense:
        A, V = (np.eye(d) if M is None else M for M in (A, V))
    bound, gap = spectral_bounds(A, beta, dense, batch=batch)
    row_max = np.broadcast_to(np.logical_and(not usa, gap > _MAX_GAP[dtype]), (batch,))
    # USA has no shift.
    shift = np.where(row_max | usa, 0.0, np.broadcast_to(bound, (batch,)))
    if A is None:
        identity = symmetric = np.ones(batch, bool)
    else:
        BA = (beta * A).astype(dtype)
        symmetric = np.broadcast_to(np.all(BA == np.swapaxes(BA, -1, -2), axis=(-2, -1)), (batch,))
    if dense:
        if A is not None:
            identity = np.broadcast_to(np.all(A == np.eye(d), axis=(-2, -1)), (batch,))
        unit_V = True if V is None else np.all(V == np.eye(d), axis=(-2, -1))
        span = np.broadcast_to(x0 is not None and span_pays(n, d, dtype, evaluations), (batch,)) & unit_V
        paths = [row_max, identity, span, symmetric & ~row_max & (n >= BLOCKED_MIN_N)]
    else:
        paths = [row_max, symmetric & ~row_max & (d == 2)]
    paths = np.stack(np.broadcast_arrays(*paths), axis=1)
    if (paths == paths[0]).all():  # one kind (the usual case): np.unique costs a short run 1%
        kinds, which = paths[:1], np.zeros(batch, np.int64)
    else:
        kinds, which = np.unique(paths, axis=0, return_inverse=True)

    def build(systems, path):
        """The field of the systems (indices, or None for all) that take this path."""

        def take(M):
            return M if systems is None or M is None or M.ndim == 2 else M[systems]

        kw = dict(
            A=take(A),
            V=take(V),
            beta=beta,
            usa=usa,
            n=n,
            dtype=dtype,
            batch=batch if systems is None else len(systems),
            shift=shift if systems is None else shift[systems],
            row_max=bool(path[0]),
        )
        if not dense:
            return FusedField(**kw)
        if path[1]:
            kw["A"] = None
        basis = None
        if path[2]:
            basis = span_basis(x0 if systems is None else x0.reshape(-1, n, d)[systems])
        return DenseField(**kw, d=d, basis=basis)

    if len(kinds) == 1:
        return build(None, kinds[0])
    groups = []
    for k, path in enumerate(kinds):
        systems = np.flatnonzero(which.reshape(-1) == k)
        groups.append((systems, build(systems, path)))
    return GroupedField(groups)


def spectral_bounds(A, beta, use_torch=False, *, batch=1):
    """(bound, gap), each (systems,): bound = beta |A_b|_2, the largest logit
    |<x_i, beta A_b x_j>| on the sphere can reach, and gap = beta (|A_b|_2 - lambda_min),
    lambda_min the lowest eigenvalue of (A_b + A_b^T) / 2: at most that far below the bound
    lies the largest logit of any row (see _MAX_GAP). ``use_torch``: compute in torch (the
    dense field's rule, see ``DenseField``). A = None: the identity, for ``batch`` systems."""
    if A is None:
        return np.full(batch, float(beta)), np.zeros(batch)
    A = np.asarray(A, np.float64).reshape((-1,) + A.shape[-2:])
    if np.array_equal(A, np.broadcast_to(np.eye(A.shape[-1]), A.shape)):
        return np.full(len(A), float(beta)), np.zeros(len(A))
    sym = 0.5 * (A + np.swapaxes(A, 1, 2))
    if use_torch:
        norm = torch.linalg.matrix_norm(torch.from_numpy(A), ord=2).numpy()
        lowest = torch.linalg.eigvalsh(torch.from_numpy(sym))[:, 0].numpy()
    else:
        norm = np.linalg.norm(A, ord=2, axis=(1, 2))
        lowest = np.linalg.eigvalsh(sym)[:, 0]
    return beta * norm, beta * (norm - lowest)


class FusedField(FieldBase):
    """Numba kernels; states padded to dp = 2 (d = 2) or a multiple of 4 coordinates, the
    padding staying zero."""

    def __init__(self, *, A, V, beta, usa, batch, n, dtype, shift, row_max):
        d = A.shape[-1]
        self.dp = 2 if d == 2 else -(-d // 4) * 4
        super().__init__(A=A, V=V, beta=beta, usa=usa, batch=batch, n=n, dtype=dtype, shift=shift, row_max=row_max)
        shape = (batch, self.dp, n)
        self.norms = np.empty((batch, n), dtype)
        self.ax = np.empty(shape, dtype)
        self.vx = np.empty(shape, dtype)
        threads = numba.config.NUMBA_NUM_THREADS
        # A symmetric BA (Q^T K symmetric, e.g. Q = K = I) lets w_ij and w_ji share one
        # exponential. ``make_field`` gives this field only systems that all take it or all
        # do not, so the choice never depends on the batch. On the circle only: with 4
        # coordinates the offset loops carry too many arrays for LLVM's alias checks and stay
        # scalar (measured 3x slower than interact4).
        self.symmetric = self.dp == 2 and not self.row_max and np.array_equal(self.BA, np.swapaxes(self.BA, 1, 2))
        if self.symmetric:
            self.n_parts = _kernels.symmetric_parts(n)
            self.work = np.empty((threads, 12, 2 * n), dtype)
            parts = (batch, self.n_parts, 6, 2 * n) if self.n_parts > 1 else (0, 1, 1, 1)
            self.partial = np.empty(parts, dtype)
            self._interact = _kernels.interact_symmetric
            # One task per system for all its steps: enough tasks when one part suffices.
            self.fused_euler = self.n_parts == 1
            self.completed = np.empty(batch, np.int64)
        else:
            # Rows per task: whole systems when the batch keeps the cores busy, at most
            # _MAX_CHUNK_PAIRS pairs so the weights buffer stays in cache.
            rows = n if batch >= _MIN_TASKS else -(-n * batch // _MIN_TASKS)
            self.chunk = max(1, min(rows, _MAX_CHUNK_PAIRS // n))
            self.work = np.empty((threads, self.chunk, n), dtype)
            self._interact = _kernels.interact2 if self.dp == 2 else _kernels.interact4
            # Whole systems per task for all the steps once the batch alone keeps the cores
            # busy; smaller batches split each system's tokens among the threads, step by step.
            self.fused_euler = batch >= _MIN_TASKS
            if self.fused_euler:
                self.v = np.empty(shape, dtype)
                self.completed = np.empty(batch, np.int64)

    def coordinate_major(self, x):
        """The state as (B, dp, n), padded to 2 or a multiple of 4: the observables' layout."""
        return x

    def velocity(self, x, project, out):
        """The field at x (B, dp, n) into out; its tangent part if ``project``."""
        _kernels.prepare(x, self.BA, self.V, self.ax, self.vx)
        if self.symmetric:
            self._interact(
                x, self.ax, self.vx, self.shift, self.usa, project, self.n_parts, self.work, self.partial, out
            )
        else:
            self._interact(x, self.ax, self.vx, self.shift, self.usa, self.row_max, project, self.chunk, self.work, out)

    def retract(self, x, v, h, out):
        """out = (x + h v) / |x + h v| token by token; False if the result is not finite."""
        return _kernels.retract(x, v, h, out, self.norms)

    def euler(self, x, h, n_steps):
        """n_steps of the authors' Euler scheme in place, in one parallel launch
        (``fused_euler`` fields only); returns the number of steps after which every
        system is still finite."""
        if self.symmetric:
            _kernels.euler_symmetric(x, self.BA, self.V, self.shift, self.usa, h, n_steps, self.work, self.completed)
        else:
            euler = _kernels.euler2 if self.dp == 2 else _kernels.euler4
            workers = min(numba.get_num_threads(), len(x))
            euler(
                x,
                self.BA,
                self.V,
                self.shift,
                self.usa,
                self.row_max,
                h,
                n_steps,
                self.chunk,
                self.ax,
                self.vx,
                self.v,
                self.work[:workers],
                self.norms,
                np.zeros(1, np.int64),
                self.completed,
            )
        return int(self.completed.min())

    def axpy(self, x, a, v, out):
        _kernels.axpy(x, a, v, out)

    def rk4_combine(self, k1, k2, k3, k4, out):
        _kernels.rk4_combine(k1, k2, k3, k4, out)


class GroupedField:
    """Systems whose own parameters call for different arithmetic (shift or row maxima,
    symmetric kernels, the span), each group in a field of its own. Every operation runs
    group by group on copies of its systems, so each system gets the bits it gets alone.

    States are (batch, size), from ``pack``: row b holds system b in its group's layout,
    flattened and padded with zeros (the span's coordinates are shorter than the user's).

    Args:
        groups: [(systems, field)], the indices of each group's systems in the batch and
            its field; together the groups hold every system once.
    """

    # Whole Euler steps group by group: each group runs all its steps in one go.
    fused_euler = True

    def __init__(self, groups):
        self.groups = groups
        self.batch = sum(len(systems) for systems, _ in groups)
        self.shapes = None

    def pack(self, x):
        x = x.reshape((-1,) + x.shape[-2:])
        parts = [field.pack(x[systems]) for systems, field in self.groups]
        self.shapes = [part.shape[1:] for part in parts]
        out = np.zeros((self.batch, max(part[0].size for part in parts)), x.dtype)
        for (systems, _), part in zip(self.groups, parts):
            out[systems, : part[0].size] = part.reshape(len(systems), -1)
        return out

    def _parts(self, x, systems, shape):
        """The systems' rows of x in their group's layout (a copy)."""
        return x[systems, : np.prod(shape)].reshape((len(systems),) + shape)

    def _gather(self, convert, x):
        """convert(field, systems' state) of every group, assembled into one (batch, ...)."""
        out = None
        for (systems, field), shape in zip(self.groups, self.shapes):
            part = convert(field, self._parts(x, systems, shape))
            if out is None:
                out = np.empty((self.batch,) + part.shape[1:], part.dtype)
            out[systems] = part
        return out

    def unpack(self, x, d, batched):
        out = self._gather(lambda field, part: field.unpack(part, d, True), x)
        return out if batched else out[0]

    def coordinate_major(self, x):
        return self._gather(lambda field, part: field.coordinate_major(part), x)

    def _each(self, out, call, *states):
        """call(field, *states in the group's layout, out part) for every group, then the
        out part to out's rows (padding zero); returns the calls' results."""
        results = []
        for (systems, field), shape in zip(self.groups, self.shapes):
            part = np.empty((len(systems),) + shape, out.dtype)
            results.append(call(field, *(self._parts(x, systems, shape) for x in states), part))
            out[systems] = 0.0
            out[systems, : part[0].size] = part.reshape(len(systems), -1)
        return results

    def velocity(self, x, project, out):
        self._each(out, lambda f, xs, part: f.velocity(xs, project, part), x)

    def retract(self, x, v, h, out):
        return all(self._each(out, lambda f, xs, vs, part: f.retract(xs, vs, h, part), x, v))

    def euler(self, x, h, n_steps):
        """n_steps Euler steps in place, group by group; returns the number of steps after
        which every system is still finite."""

        def advance(field, xs, part):
            part[...] = xs
            return Euler(field, part).advance(part, h, n_steps)

        return min(self._each(x, advance, x))

    def axpy(self, x, a, v, out):
        self._each(out, lambda f, xs, vs, part: f.axpy(xs, a, vs, part), x, v)

    def rk4_combine(self, k1, k2, k3, k4, out):
        self._each(out, lambda f, *ks: f.rk4_combine(*ks), k1, k2, k3, k4)
