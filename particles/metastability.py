"""Metastability: the staircase of cluster counts against log t, and its plateaus
(Geshkovski, Koubbi, Polyanskiy & Rigollet, 2024; theory note, section 4).

Their theorem: tokens that start in k well-separated caps stay there until a time
T_2 >= (eps / n) e^{(1 - alpha) beta}, with alpha the largest inner product between caps, so
the logarithm of a plateau's length grows at least like (1 - alpha) beta.
"""

import dataclasses

import numpy as np

from ._simulate import simulate
from .checks import check_int, check_real
from .observables import count_clusters

# A plateau lasts at least a doubling of t.
MIN_LOG_LENGTH = float(np.log(2.0))

__all__ = ["Plateau", "find_plateaus", "log_time_grid"]


@dataclasses.dataclass(frozen=True)
class Plateau:
    """A stretch of time over which the cluster count does not change.

    Attributes:
        start, end: first and last saved times of the stretch.
        clusters: the cluster count on it.
    """

    start: float
    end: float
    clusters: int

    @property
    def log_length(self):
        """log(end / start): the length on the log-time axis of the staircase."""
        return float(np.log(self.end / self.start))


def log_time_grid(t_min, t_max, points_per_decade=20):
    """Times log-spaced from t_min to t_max (> t_min > 0)."""
    t_min = check_real("t_min", t_min, low=0.0, low_inclusive=False)
    t_max = check_real("t_max", t_max, low=t_min, low_inclusive=False)
    points_per_decade = check_int("points_per_decade", points_per_decade, low=1)
    decades = np.log10(t_max / t_min)
    return np.logspace(np.log10(t_min), np.log10(t_max), int(np.ceil(decades * points_per_decade)) + 1)


def find_plateaus(ts, counts, *, min_log_length=MIN_LOG_LENGTH):
    """Maximal stretches of constant cluster count that last at least a factor e^min_log_length.

    Args:
        ts: (m,) increasing positive times.
        counts: (m,) cluster counts at those times (for instance ``count_clusters(traj.xs)``).
        min_log_length: shortest plateau kept, in units of log t (default: a doubling).

    Returns:
        list of ``Plateau``, in time order.
    """
    ts = np.asarray(ts, dtype=np.float64)
    counts = np.asarray(counts)
    if ts.ndim != 1 or counts.shape != ts.shape:
        raise ValueError(f"ts and counts must be 1-D of equal length, got shapes {ts.shape} and {counts.shape}")
    if ts.size and (ts[0] <= 0 or np.any(np.diff(ts) <= 0)):
        raise ValueError("ts must be positive and strictly increasing (a log-time axis)")
    plateaus = []
    start = 0
    for i in range(1, len(ts) + 1):
        if i == len(ts) or counts[i] != counts[start]:
            plateau = Plateau(float(ts[start]), float(ts[i - 1]), int(counts[start]))
            if plateau.log_length >= min_log_length:
                plateaus.append(plateau)
            start = i
    return plateaus


def staircase(x0, beta, ts, *, dt=0.1, tol=1e-3, dynamics="SA", method="euler", on_steps=None):
    """Cluster counts of a run at the given (log-spaced) times.

    The run takes fixed steps dt and records the state at the first step reaching each
    time, so that long times stay cheap.

    Args:
        x0: (n, d) or (batch, n, d) initial state.
        beta: inverse temperature.
        ts: (m,) increasing times.
        dt, dynamics, method: as in ``simulate``.
        tol: cluster linkage tolerance.
        on_steps: called with the number of steps taken after each stretch of the run
            (``ceil(ts[-1] / dt)`` in all): a progress bar in steps.

    Returns:
        (m,) or (m, batch) cluster counts.
    """
    ts = np.asarray(ts, dtype=np.float64)
    steps = np.unique(np.ceil(ts / dt - 1e-9).astype(np.int64))
    counts = {}
    x, done = np.asarray(x0), 0
    for s in steps:
        if s > done:
            x = simulate(
                x, beta=beta, t_max=(s - done) * dt, dt=dt, dynamics=dynamics, method=method, save_every=s - done
            ).final
            if on_steps is not None:
                on_steps(int(s - done))
            done = s
        counts[s] = count_clusters(x, tol=tol)
    return np.stack([counts[s] for s in np.ceil(ts / dt - 1e-9).astype(np.int64)])
