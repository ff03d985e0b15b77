"""The three time steppers, over the operations of a field (see ``_fields``)."""
import numpy as np


class Euler:
    """The authors' scheme: x_i <- (x_i + h v_i) / |x_i + h v_i|, v unprojected. Order 1."""

    def __init__(self, field, x):
        self.field = field
        self.v = np.empty_like(x)

    def advance(self, x, h, n_steps):
        """n_steps steps of size h in place; returns the number completed with finite states."""
        if self.field.fused_euler:
            return self.field.euler(x, h, n_steps)
        for step in range(n_steps):
            self.field.velocity(x, False, self.v)
            if not self.field.retract(x, self.v, h, x):
                return step
        return n_steps


class RK4:
    """Classical Runge-Kutta on the projected field, renormalised after each step. Order 4."""

    def __init__(self, field, x):
        self.field = field
        self.ks = np.empty((5,) + x.shape, x.dtype)
        self.y = np.empty_like(x)

    def advance(self, x, h, n_steps):
        f, k, y = self.field, self.ks, self.y
        for step in range(n_steps):
            f.velocity(x, True, k[0])
            f.axpy(x, 0.5 * h, k[0], y)
            f.velocity(y, True, k[1])
            f.axpy(x, 0.5 * h, k[1], y)
            f.velocity(y, True, k[2])
            f.axpy(x, h, k[2], y)
            f.velocity(y, True, k[3])
            f.rk4_combine(k[0], k[1], k[2], k[3], k[4])
            if not f.retract(x, k[4], h, x):
                return step
        return n_steps


# Dormand & Prince (1980) RK5(4) tableau; _E are the differences of the two weight rows.
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
                f.retract(y, y, 0.0, x)
                f.velocity(x, True, ks[0])
                self.n_accepted += 1
            else:
                self.n_rejected += 1
            factor = 0.9 * worst ** -0.2 if worst > 0 else 10.0
            self.h = h * min(10.0, max(0.2, factor))
        return True, t
