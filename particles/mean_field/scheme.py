r"""Time stepping of the finite-volume scheme: SSP-RK3 with an adaptive, CFL-limited step.

The semi-discrete scheme d rho_i / dt = -(F_{i+1/2} - F_{i-1/2}) / h (``_flux_kernels``) is
integrated by the three-stage strong-stability-preserving Runge-Kutta method of Shu & Osher
(1988), a convex combination of forward Euler steps: it keeps the positivity and the exact
mass balance of one Euler step, and is third order in time. The step is

    dt = cfl * min(h / max|u|, 1 / max|du/dtheta|),

the first limit the CFL condition of the upwind MUSCL flux (positive for cfl <= 1/2), the
second keeping the compression rate per step bounded where the flow is slow but converging.
Steps are shortened to land exactly on every save time.
"""

import numpy as np

from ._flux_kernels import muscl_rhs, step_rate

DEFAULT_CFL = 0.4


class SSPRK3:
    """One grid's stepper: ``advance(rho, t, t_end)`` steps from t to exactly t_end.

    Args:
        velocity: callable rho (M,) -> u at the faces (M,).
        M: cells. cfl: Courant number, in (0, 1/2] for positivity.
    """

    def __init__(self, velocity, M, cfl=DEFAULT_CFL):
        self.velocity = velocity
        self.h = 2.0 * np.pi / M
        self.cfl = cfl
        self.steps = 0
        self._k = np.empty(M)

    def _rhs(self, rho, u):
        muscl_rhs(rho, u, self.h, self._k)
        return self._k

    def stable_step(self, u):
        """The largest step allowed at face velocities u."""
        rate = step_rate(u, self.h)
        return np.inf if rate == 0.0 else self.cfl / rate

    def advance(self, rho, t, t_end):
        """rho at t_end from rho at t (a new array); counts the steps in ``steps``."""
        while t < t_end:
            u = self.velocity(rho)
            dt = self.stable_step(u)
            # A step that would leave a sliver shorter than a tenth of itself takes it along.
            if t + 1.1 * dt >= t_end:
                dt, t_next = t_end - t, t_end
            else:
                t_next = t + dt
            stage = rho + dt * self._rhs(rho, u)
            stage = 0.75 * rho + 0.25 * (stage + dt * self._rhs(stage, self.velocity(stage)))
            rho = rho / 3.0 + (2.0 / 3.0) * (stage + dt * self._rhs(stage, self.velocity(stage)))
            t = t_next
            self.steps += 1
            if not np.all(np.isfinite(rho)):
                raise RuntimeError(
                    f"the density became non-finite at t = {t:g} after {self.steps} steps; for USA at large "
                    f"beta the kernel e^(beta cos) overflows: lower beta or use SA"
                )
        return rho
