"""The parameters that define a run, validated once."""

import dataclasses
from typing import Optional

import numpy as np

from .checks import check_choice, check_int, check_real

DYNAMICS = ("SA", "USA")
METHODS = ("euler", "rk4", "dopri5")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class SimulationParams:
    """Everything besides the initial state that defines a run of ``simulate``.

    Attributes:
        beta: inverse temperature, >= 0.
        t_max: final time, >= 0.
        dt: step (fixed-step methods) or output spacing and largest step (dopri5), > 0.
        dynamics: "SA" (softmax normalisation) or "USA" (Z_i = n).
        method: "euler" (the authors' scheme), "rk4" or "dopri5".
        save_every: steps between saved frames (dopri5: output intervals of length dt).
        rtol, atol: tolerances of dopri5.
        Q, K, V: None (identity), (d, d) shared or (batch, d, d) per system, float64.
        dtype: "float64" or "float32", the precision of the state.
    """

    beta: float
    t_max: float
    dt: float
    dynamics: str = "SA"
    method: str = "euler"
    save_every: int = 1
    rtol: float = 1e-6
    atol: float = 1e-9
    Q: Optional[np.ndarray] = None
    K: Optional[np.ndarray] = None
    V: Optional[np.ndarray] = None
    dtype: str = "float64"

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("beta", check_real("beta", self.beta, low=0.0))
        set_("t_max", check_real("t_max", self.t_max, low=0.0))
        set_("dt", check_real("dt", self.dt, low=0.0, low_inclusive=False))
        check_choice("dynamics", self.dynamics, DYNAMICS)
        check_choice("method", self.method, METHODS)
        set_("save_every", check_int("save_every", self.save_every, low=1))
        set_("rtol", check_real("rtol", self.rtol, low=0.0, low_inclusive=False))
        set_("atol", check_real("atol", self.atol, low=0.0, low_inclusive=False))
        check_choice("dtype", self.dtype, ("float64", "float32"))

    def __eq__(self, other):
        if not isinstance(other, SimulationParams):
            return NotImplemented
        return all(_same(a, b) for a, b in zip(_values(self), _values(other)))

    def step_grid(self):
        """The fixed-step grid: times 0, dt, 2 dt, ..., t_max and the size of the last step.

        When t_max / dt is within 1e-9 of an integer N, N equal steps; otherwise the last
        step is shortened to end exactly at t_max.
        """
        ratio = self.t_max / self.dt
        n_steps = round(ratio)
        exact = abs(ratio - n_steps) <= 1e-9
        if not exact:
            n_steps = int(np.floor(ratio)) + 1
        ts = np.arange(n_steps + 1) * self.dt
        ts[-1] = self.t_max
        last = self.dt if exact else self.t_max - (n_steps - 1) * self.dt
        return ts, last

    def frame_steps(self):
        """Indices into the step grid of the saved frames: every save_every-th and the last."""
        n_steps = len(self.step_grid()[0]) - 1
        return np.unique(np.r_[np.arange(0, n_steps + 1, self.save_every), n_steps])


def _values(params):
    return [getattr(params, f.name) for f in dataclasses.fields(params)]


def _same(a, b):
    if a is None or b is None:
        return a is b
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and np.array_equal(a, b)
    return a == b
