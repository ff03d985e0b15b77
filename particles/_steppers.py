"""Time steppers over the Numba kernels: the field of one run and the three methods."""
import numpy as np

from . import _kernels

# Above this, exp(-2 beta |A|) would underflow for the bound shift: use exact row maxima.
_MAX_BOUND_SPREAD = 600.0
# Tasks per field evaluation to aim for, so that small batches still use every core.
_MIN_TASKS = 16


class Field:
    """The velocity field of one run, with its padded parameters and scratch buffers.

    States are (B, dp, n) arrays, dp = d rounded up to the kernels' coordinate group (2 or
    4); the padding coordinates stay zero.
    """

    def __init__(self, *, A, V, beta, usa, batch, n, dtype):
        d = A.shape[-1]
        self.group = 2 if d == 2 else 4
        self.dp = -(-d // self.group) * self.group
        self.A = _pad(A, self.dp)
        self.V = _pad(V, self.dp)
        self.beta = float(beta)
        self.usa = bool(usa)
        norms = np.linalg.norm(A, ord=2, axis=(-2, -1))
        # |<x_i, A x_j>| <= |A|_2 on the sphere, so beta |A|_2 bounds every logit.
        self.shift = np.broadcast_to(self.beta * norms, (batch,)).astype(np.float64)
        self.row_max = bool(2.0 * self.shift.max(initial=0.0) > _MAX_BOUND_SPREAD)
        self.chunk = n if batch >= _MIN_TASKS else max(1, -(-n * batch // _MIN_TASKS))
        n_tasks = batch * -(-n // self.chunk)
        shape = (batch, self.dp, n)
        self.ax = np.empty(shape, dtype)
        self.vx = np.empty(shape, dtype)
        self.work = np.empty((n_tasks, n), dtype)
        self.norms = np.empty((batch, n), dtype)

    def pack(self, x):
        """([B,] n, d) user layout -> (B, dp, n) kernel layout."""
        x = x.reshape((-1,) + x.shape[-2:])
        out = np.zeros((x.shape[0], self.dp, x.shape[1]), x.dtype)
        out[:, : x.shape[2], :] = np.swapaxes(x, 1, 2)
        return out

    def unpack(self, x, d, batched):
        """(B, dp, n) kernel layout -> ([B,] n, d) user layout (a copy)."""
        out = np.ascontiguousarray(np.swapaxes(x[:, :d, :], 1, 2))
        return out if batched else out[0]

    def velocity(self, x, project, out):
        _kernels.velocity(
            x, self.A, self.V, self.beta, self.shift, self.usa, self.row_max, project,
            self.chunk, self.ax, self.vx, self.work, out,
        )

    def kernel_args(self):
        return (self.A, self.V, self.beta, self.shift, self.usa, self.row_max)


def _pad(M, dp):
    out = np.zeros(M.shape[:-2] + (dp, dp))
    out[..., : M.shape[-2], : M.shape[-1]] = M
    return out.reshape((-1, dp, dp))


class Euler:
    """The authors' scheme: x_i <- (x_i + h v_i) / |x_i + h v_i|, v unprojected. Order 1."""

    def __init__(self, field, x):
        self.field = field
        self.v = np.empty_like(x)

    def advance(self, x, h, n_steps):
        """n_steps steps of size h in place; returns the number completed with finite states."""
        f = self.field
        return _kernels.euler_steps(
            x, *f.kernel_args(), h, n_steps, f.chunk, f.ax, f.vx, f.work, self.v, f.norms
        )


class RK4:
    """Classical Runge-Kutta on the projected field, renormalised after each step. Order 4."""

    def __init__(self, field, x):
        self.field = field
        self.ks = np.empty((5,) + x.shape, x.dtype)
        self.y = np.empty_like(x)

    def advance(self, x, h, n_steps):
        f = self.field
        return _kernels.rk4_steps(
            x, *f.kernel_args(), h, n_steps, f.chunk, f.ax, f.vx, f.work, self.ks, self.y, f.norms
        )


# Dormand & Prince (1980) RK5(4) tableau; _E are the differences of the two weight rows.
_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_E = np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])


class Dopri5:
    """Adaptive Dormand-Prince 5(4) on the projected field, renormalised after each step.

    One step size is shared by the batch: a step is accepted when every system's RMS error,
    scaled by atol + rtol |x|, is at most 1. The first trial step is dt.
    """

    def __init__(self, field, x, *, rtol, atol, h0):
        self.field = field
        self.rtol, self.atol = rtol, atol
        self.h = h0
        self.ks = np.empty((7,) + x.shape, x.dtype)
        self.n_accepted = self.n_rejected = 0

    def advance_to(self, x, t, t_end):
        """Integrate x in place from t to t_end (exactly); returns (ok, time of failure)."""
        f, ks = self.field, self.ks
        f.velocity(x, True, ks[0])
        while t < t_end:
            h = min(self.h, t_end - t)
            last = h >= t_end - t
            for s in range(1, 7):
                y = x + h * np.tensordot(_A[s], ks[:s], axes=(0, 0))
                f.velocity(y, True, ks[s])
            # The seventh stage is the new point (first-same-as-last).
            err = h * np.tensordot(_E, ks, axes=(0, 0))
            scale = self.atol + self.rtol * np.maximum(np.abs(x), np.abs(y))
            ratio = np.sqrt(np.mean((err / scale) ** 2, axis=(1, 2)))
            worst = float(ratio.max())
            if not np.isfinite(worst) or not np.all(np.isfinite(y)):
                return False, t
            if worst <= 1.0:
                t = t_end if last else t + h
                norm = np.sqrt(np.sum(y * y, axis=1, keepdims=True))
                x[...] = y / norm
                f.velocity(x, True, ks[0])
                self.n_accepted += 1
            else:
                self.n_rejected += 1
            factor = 0.9 * worst ** -0.2 if worst > 0 else 10.0
            self.h = h * min(10.0, max(0.2, factor))
        return True, t
