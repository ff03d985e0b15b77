"""The velocity field of one run: parameters, kernels and scratch buffers.

A field packs states into its own layout and offers the operations the
steppers need: ``velocity``, ``retract``, ``axpy`` and ``rk4_combine``. Two kinds:

- ``FusedField`` (d <= 8): Numba kernels that fuse logits, exponentials and sums per pair.
- ``DenseField`` (d > 8): the logits and weighted sums are matrix products, so everything
  runs in torch (BLAS), which wins once the d-dimensional inner products dominate. Mixing
  it with Numba's parallel kernels would make two thread pools fight over the cores, so
  this field uses torch alone, on states in the row layout (B, n, d).
"""
import numba
import numpy as np
import torch

from . import _kernels

# Above this, exp(-2 beta |A|) could underflow for the bound shift: use exact row maxima.
_MAX_BOUND_SPREAD = 600.0
# Tasks per field evaluation to aim for, so that small batches still use every core.
_MIN_TASKS = 16
_MAX_CHUNK_PAIRS = 8192
# Up to this dimension the fused kernels win (benchmarks/bench_simulate.py).
MAX_FUSED_D = 8


def make_field(*, A, V, beta, usa, batch, n, dtype):
    """The field of the dynamics for interaction matrix A = Q^T K and value matrix V.

    Args:
        A, V: (d, d) or (batch, d, d) float64.
        beta: inverse temperature.
        usa: True for USA (Z_i = n), False for SA.
        batch, n: systems and tokens.
        dtype: dtype of the state.
    """
    d = A.shape[-1]
    cls = FusedField if d <= MAX_FUSED_D else DenseField
    return cls(A=A, V=V, beta=beta, usa=usa, batch=batch, n=n, dtype=np.dtype(dtype))


class _Field:
    dp: int

    def __init__(self, *, A, V, beta, usa, batch, n, dtype):
        self.usa = bool(usa)
        self.BA = _pad(beta * A, self.dp, dtype)
        self.V = _pad(V, self.dp, dtype)
        self.norms = np.empty((batch, n), dtype)

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
        self.row_max = bool(2.0 * self.shift.max() > _MAX_BOUND_SPREAD)
        shape = (batch, self.dp, n)
        self.ax = np.empty(shape, dtype)
        self.vx = np.empty(shape, dtype)
        # Rows per task: whole systems when the batch keeps the cores busy, at most
        # _MAX_CHUNK_PAIRS pairs so the weights buffer stays in cache.
        rows = n if batch >= _MIN_TASKS else -(-n * batch // _MIN_TASKS)
        self.chunk = max(1, min(rows, _MAX_CHUNK_PAIRS // n))
        self.work = np.empty((numba.config.NUMBA_NUM_THREADS, self.chunk, n), dtype)
        self._interact = _kernels.interact2 if self.dp == 2 else _kernels.interact4

    def coordinate_major(self, x):
        """The state as (B, dp, n), padded to 2 or a multiple of 4: the observables' layout."""
        return x

    def velocity(self, x, project, out):
        """The field at x (B, dp, n) into out; its tangent part if ``project``."""
        _kernels.prepare(x, self.BA, self.V, self.ax, self.vx)
        self._interact(x, self.ax, self.vx, self.shift, self.usa, self.row_max, project,
                       self.chunk, self.work, out)

    def retract(self, x, v, h, out):
        """out = (x + h v) / |x + h v| token by token; False if the result is not finite."""
        return _kernels.retract(x, v, h, out, self.norms)

    def axpy(self, x, a, v, out):
        _kernels.axpy(x, a, v, out)

    def rk4_combine(self, k1, k2, k3, k4, out):
        _kernels.rk4_combine(k1, k2, k3, k4, out)


class DenseField(_Field):
    """torch matrix products, on states in the row layout (B, n, d) that BLAS prefers."""

    def __init__(self, *, A, V, beta, usa, batch, n, dtype):
        self.dp = A.shape[-1]
        super().__init__(A=A, V=V, beta=beta, usa=usa, batch=batch, n=n, dtype=dtype)
        eye = np.eye(self.dp)
        # Identity matrices (the default) skip their (d x d) products: at n < d those would
        # cost more than the logits themselves.
        self._beta = float(beta)
        self._BA_T = None if np.all(A == eye) else torch.from_numpy(self.BA).transpose(1, 2)
        self._V_T = None if np.all(V == eye) else torch.from_numpy(self.V).transpose(1, 2)

    def pack(self, x):
        """([B,] n, d) -> (B, n, d) (a copy)."""
        return np.array(x.reshape((-1,) + x.shape[-2:]))

    def unpack(self, x, d, batched):
        return x.copy() if batched else x[0].copy()

    def coordinate_major(self, x):
        # Padded to a multiple of 4 coordinates, as the observable kernels expect.
        out = np.zeros((x.shape[0], -(-self.dp // 4) * 4, x.shape[1]), x.dtype)
        out[:, : self.dp, :] = np.swapaxes(x, 1, 2)
        return out

    def velocity(self, x, project, out):
        xt, ot = torch.from_numpy(x), torch.from_numpy(out)
        ax = self._beta * xt if self._BA_T is None else xt @ self._BA_T
        logits = xt @ ax.transpose(1, 2)
        # torch's softmax subtracts the exact row maxima itself.
        weights = logits.exp_().div_(logits.shape[2]) if self.usa else torch.softmax(logits, dim=2)
        # matmul(..., out=) measured slower than a product and a copy.
        ot.copy_(weights @ (xt if self._V_T is None else xt @ self._V_T))
        if project:
            ot.sub_((xt * ot).sum(dim=2, keepdim=True) * xt)

    def retract(self, x, v, h, out):
        y = torch.add(torch.from_numpy(x), torch.from_numpy(v), alpha=h, out=torch.from_numpy(out))
        norms = torch.linalg.vector_norm(y, dim=2, keepdim=True)
        y.div_(norms)
        # A non-finite or zero row shows in its norm: no need to scan every entry.
        return bool(torch.isfinite(norms).all() and (norms > 0).all())

    def axpy(self, x, a, v, out):
        torch.add(torch.from_numpy(x), torch.from_numpy(v), alpha=a, out=torch.from_numpy(out))

    def rk4_combine(self, k1, k2, k3, k4, out):
        t = [torch.from_numpy(k) for k in (k1, k2, k3, k4)]
        torch.from_numpy(out).copy_((t[0] + 2.0 * (t[1] + t[2]) + t[3]) / 6.0)
