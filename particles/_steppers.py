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
# The error estimate is of order 4: the step scales with error^(-1/5).
_ERROR_EXPONENT = -1 / 5
# Step-size controller of Hairer, Norsett & Wanner (1993), II.4: safety factor and the
# bounds of one change.
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0
# A non-finite trial stage says only that the step is far too large, not by how much.
_NON_FINITE_FACTOR = 0.25
# The run fails once a step falls below this fraction of its time scale min(dt, 1/|f|).
_MIN_STEP_FRACTION = 1e-12


def error_norm(v, scale, real_size):
    """(B,) RMS of v / scale over each system's real coordinates.

    Args:
        v, scale: (B, ...) arrays in a field's layout; padded coordinates of v are zero
            (fields keep the padding at zero), so they add nothing to the sum.
        real_size: the number of real coordinates of one system, n * d.
    """
    return np.sqrt(np.sum((v / scale) ** 2, axis=tuple(range(1, v.ndim))) / real_size)


class Dopri5:
    """Adaptive Dormand-Prince 5(4) on the projected field, renormalised after each step.

    One step size is shared by the batch: a step is accepted when every system's RMS error
    over its n * d real coordinates, scaled by atol + rtol |x|, is at most 1. The first
    trial step comes from the starting step algorithm of Hairer, Norsett & Wanner (1993,
    II.4), capped by dt. A step whose stages are not finite (a stage left the sphere so far
    that the weights overflow) is rejected and shrunk; the run fails only when the step
    falls below 1e-12 of the time scale min(dt, 1 / max|f|), or the field is not finite at
    an accepted state.

    Attributes:
        n_accepted, n_rejected: steps accepted and rejected so far.
        failure: after ``advance_to`` failed, "non-finite" (the field or every trial step
            down to the smallest was not finite) or "step size" (the error test kept
            failing down to the smallest step: tolerances below the dtype's resolution).
    """

    def __init__(self, field, x, *, real_size, rtol, atol, dt):
        self.field = field
        self.real_size = real_size
        self.rtol, self.atol, self.dt = rtol, atol, dt
        self.h = None
        self.ks = np.empty((7,) + x.shape, x.dtype)
        self.n_accepted = self.n_rejected = 0
        self.failure = None

    def advance_to(self, x, t, t_end):
        """Integrate x in place from t to t_end (exactly); returns (ok, time of failure)."""
        f, ks = self.field, self.ks
        f.velocity(x, True, ks[0])
        if not np.all(np.isfinite(ks[0])):
            self.failure = "non-finite"
            return False, t
        if self.h is None:
            self.h = self._initial_step(x)
        grow = True
        while t < t_end:
            h = min(self.h, t_end - t)
            last = h >= t_end - t
            with np.errstate(over="ignore", invalid="ignore"):
                for s in range(1, 7):
                    y = x + h * np.tensordot(_A[s], ks[:s], axes=(0, 0))
                    f.velocity(y, True, ks[s])
                # The seventh stage is the new point (first-same-as-last).
                err = h * np.tensordot(_E, ks, axes=(0, 0))
                scale = self.atol + self.rtol * np.maximum(np.abs(x), np.abs(y))
                worst = float(error_norm(err, scale, self.real_size).max())
            if not np.isfinite(worst) or not np.all(np.isfinite(y)):
                self.n_rejected += 1
                self.h, grow = h * _NON_FINITE_FACTOR, False
                if self.h < self._min_step(t):
                    self.failure = "non-finite"
                    return False, t
                continue
            factor = _SAFETY * worst**_ERROR_EXPONENT if worst > 0 else _MAX_FACTOR
            if worst <= 1.0:
                t = t_end if last else t + h
                f.retract(y, y, 0.0, x)
                f.velocity(x, True, ks[0])
                self.n_accepted += 1
                if not np.all(np.isfinite(ks[0])):
                    self.failure = "non-finite"
                    return False, t
                proposal = h * min(_MAX_FACTOR if grow else 1.0, max(_MIN_FACTOR, factor))
                # A step cut short to land on t_end says nothing against the longer one.
                self.h = max(self.h, proposal) if h < self.h else proposal
                grow = True
            else:
                self.n_rejected += 1
                # After a rejection the next step may not grow (Hairer et al., II.4).
                self.h, grow = h * min(1.0, max(_MIN_FACTOR, factor)), False
                if self.h < self._min_step(t):
                    self.failure = "step size"
                    return False, t
        return True, t

    def _min_step(self, t):
        rate = float(np.abs(self.ks[0]).max())
        time_scale = self.dt if rate * self.dt <= 1.0 else 1.0 / rate
        return max(_MIN_STEP_FRACTION * time_scale, 4 * np.finfo(np.float64).eps * abs(t))

    def _initial_step(self, x):
        """Hairer, Norsett & Wanner (1993), II.4: a step whose Euler error is ~0.01 of the
        tolerance, from |x|, |f(x)| and a finite difference of f; capped by dt.
        The smallest over the systems, which share the step."""
        f0, f1 = self.ks[0], self.ks[1]
        scale = self.atol + self.rtol * np.abs(x)
        d0 = error_norm(x, scale, self.real_size)
        d1 = error_norm(f0, scale, self.real_size)
        tiny = (d0 < 1e-5) | (d1 < 1e-5)
        h0 = float(np.min(np.where(tiny, 1e-6, 0.01 * d0 / np.where(tiny, 1.0, d1))))
        h0 = min(h0, self.dt)
        with np.errstate(over="ignore", invalid="ignore"):
            self.field.velocity(x + h0 * f0, True, f1)
            d2 = error_norm(f1 - f0, scale, self.real_size) / h0
        if not np.all(np.isfinite(d2)):
            return h0
        top = np.maximum(d1, d2)
        h1 = np.where(top <= 1e-15, max(1e-6, 1e-3 * h0), (0.01 / np.where(top <= 1e-15, 1.0, top)) ** -_ERROR_EXPONENT)
        return min(100 * h0, float(h1.min()), self.dt)
