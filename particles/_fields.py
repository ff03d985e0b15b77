"""The velocity field of one run: parameters, kernels and scratch buffers.

A field packs states into its own layout and offers the operations the
steppers need: ``velocity``, ``retract``, ``axpy`` and ``rk4_combine``, and, where
``fused_euler`` is set, ``euler`` (whole steps of the authors' scheme). Two kinds:

- ``FusedField`` (d <= 8): Numba kernels that fuse logits, exponentials and sums per pair.
- ``DenseField`` (d > 8, in ``_dense_field``): the logits and weighted sums are matrix
  products in torch (BLAS), which wins once the d-dimensional inner products dominate; the
  exponentials run in one Numba pass between them, on states in the row layout (B, n, d).
"""
import numba
import numpy as np

from . import _kernels

# Above this, exp(-2 beta |A|) could underflow for the bound shift: use exact row maxima.
_MAX_BOUND_SPREAD = 600.0
# Tasks per field evaluation to aim for, so that small batches still use every core.
_MIN_TASKS = 16
_MAX_CHUNK_PAIRS = 8192
# Up to this dimension the fused kernels win (benchmarks/bench_simulate.py).
MAX_FUSED_D = 8


def make_field(*, A, V, beta, usa, batch, n, dtype, x0=None):
    """The field of the dynamics for interaction matrix A = Q^T K and value matrix V.

    Args:
        A, V: (d, d) or (batch, d, d) float64.
        beta: inverse temperature.
        usa: True for USA (Z_i = n), False for SA.
        batch, n: systems and tokens.
        dtype: dtype of the state.
        x0: ([batch,] n, d) initial state, or None. With V = I the tokens never leave the
            span of their initial positions, so for d >= 2 n the field may run in an
            orthonormal basis of that span (see ``_dense_field``): then it may only be
            used for states of this run.
    """
    if A.shape[-1] <= MAX_FUSED_D:
        return FusedField(A=A, V=V, beta=beta, usa=usa, batch=batch, n=n, dtype=np.dtype(dtype))
    # Imported here: torch takes a second to import and d <= 8 runs never need it.
    from ._dense_field import DenseField, span_basis

    basis = None
    if x0 is not None and A.shape[-1] >= 2 * n and np.array_equal(V, np.eye(A.shape[-1])):
        basis = span_basis(x0)
    return DenseField(A=A, V=V, beta=beta, usa=usa, batch=batch, n=n, dtype=np.dtype(dtype),
                      basis=basis)


class _Field:
    dp: int
    # True when the field runs whole Euler steps itself (``euler``), without the per-step
    # velocity and retraction passes.
    fused_euler = False

    def __init__(self, *, A, V, beta, usa, batch, n, dtype):
        self.usa = bool(usa)
        self.BA = _pad(beta * A, self.dp, dtype)
        self.V = _pad(V, self.dp, dtype)

    def pack(self, x):
        """([B,] n, d) user layout -> (B, dp, n) kernel layout (a copy)."""
        x = x.reshape((-1,) + x.shape[-2:])
        out = np.zeros((x.shape[0], self.dp, x.shape[1]), x.dtype)
        out[:, : x.shape[2], :] = np.swapaxes(x, 1, 2)
        return out

    def unpack(self, x, d, batched):
        """(B, dp, n) kernel layout -> ([B,] n, d) user layout (a copy)."""
        out = np.ascontiguousarray(np.swapaxes(x[:, :d, :], 1, 2))
        return out if batched else out[0]


def _pad(M, dp, dtype):
    out = np.zeros(M.shape[:-2] + (dp, dp), dtype)
    out[..., : M.shape[-2], : M.shape[-1]] = M
    return out.reshape((-1, dp, dp))


class FusedField(_Field):
    """Numba kernels; states padded to dp = 2 (d = 2) or a multiple of 4 coordinates, the
    padding staying zero."""

    def __init__(self, *, A, V, beta, usa, batch, n, dtype):
        d = A.shape[-1]
        self.dp = 2 if d == 2 else -(-d // 4) * 4
        super().__init__(A=A, V=V, beta=beta, usa=usa, batch=batch, n=n, dtype=dtype)
        # |<x_i, A x_j>| <= |A|_2 on the sphere, so beta |A|_2 bounds every logit.
        bound = beta * np.linalg.norm(A, ord=2, axis=(-2, -1))
        self.shift = np.ascontiguousarray(np.broadcast_to(bound, (batch,)), dtype=np.float64)
        # USA has no shift, so it never needs the maxima.
        self.row_max = not self.usa and bool(2.0 * self.shift.max() > _MAX_BOUND_SPREAD)
        shape = (batch, self.dp, n)
        self.norms = np.empty((batch, n), dtype)
        self.ax = np.empty(shape, dtype)
        self.vx = np.empty(shape, dtype)
        threads = numba.config.NUMBA_NUM_THREADS
        # A symmetric BA (Q^T K symmetric, e.g. Q = K = I) lets w_ij and w_ji share one
        # exponential. The choice depends on the parameters only, never on the batch. On
        # the circle only: with 4 coordinates the offset loops carry too many arrays for
        # LLVM's alias checks and stay scalar (measured 3x slower than interact4).
        self.symmetric = (self.dp == 2 and not self.row_max
                          and np.array_equal(self.BA, np.swapaxes(self.BA, 1, 2)))
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

    def coordinate_major(self, x):
        """The state as (B, dp, n), padded to 2 or a multiple of 4: the observables' layout."""
        return x

    def velocity(self, x, project, out):
        """The field at x (B, dp, n) into out; its tangent part if ``project``."""
        _kernels.prepare(x, self.BA, self.V, self.ax, self.vx)
        if self.symmetric:
            self._interact(x, self.ax, self.vx, self.shift, self.usa, project, self.n_parts,
                           self.work, self.partial, out)
        else:
            self._interact(x, self.ax, self.vx, self.shift, self.usa, self.row_max, project,
                           self.chunk, self.work, out)

    def retract(self, x, v, h, out):
        """out = (x + h v) / |x + h v| token by token; False if the result is not finite."""
        return _kernels.retract(x, v, h, out, self.norms)

    def euler(self, x, h, n_steps):
        """n_steps of the authors' Euler scheme in place (``fused_euler`` fields only);
        returns the number of steps after which every system is still finite."""
        _kernels.euler_symmetric(x, self.BA, self.V, self.shift, self.usa, h, n_steps, self.work,
                                 self.completed)
        return int(self.completed.min())

    def axpy(self, x, a, v, out):
        _kernels.axpy(x, a, v, out)

    def rk4_combine(self, k1, k2, k3, k4, out):
        _kernels.rk4_combine(k1, k2, k3, k4, out)
