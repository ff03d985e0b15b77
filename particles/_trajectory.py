"""The result of a run: saved times, states and the parameters that produced them."""

import dataclasses
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from ._params import SimulationParams


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory:
    """Saved frames of a run.

    Attributes:
        ts: (m,) saved times, from 0 to t_max.
        xs: (m, [batch,] n, d) states at those times, shaped like the initial state. An
            in-memory array, or a lazy HDF5-backed array for a stored run (slicing reads
            only the slice).
        params: the ``SimulationParams`` of the run.
        n_accepted, n_rejected: steps dopri5 accepted and rejected over the run; None for
            the fixed-step methods and for runs read from a file.
        observables: for a run read from a file, its per-frame quantities (energy, the
            curvature along the flow, ...) as a read-only mapping name -> ``io.Observable``,
            each read on access; None for a run in memory.
    """

    ts: np.ndarray
    xs: Any
    params: SimulationParams
    n_accepted: Optional[int] = None
    n_rejected: Optional[int] = None
    observables: Optional[Mapping] = None

    def __len__(self):
        return len(self.ts)

    @property
    def final(self):
        """The last saved state, ([batch,] n, d)."""
        return np.asarray(self.xs[len(self.ts) - 1])

    def at(self, t):
        """The saved state nearest to time t."""
        return np.asarray(self.xs[int(np.argmin(np.abs(np.asarray(self.ts) - t)))])
