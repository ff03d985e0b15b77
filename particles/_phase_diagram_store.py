"""A phase diagram in an HDF5 file, saved one beta at a time and read back from the file alone."""

import numpy as np

from ._phase_diagram import ClusteringEnsemble, PhaseDiagram
from .io import ResultStore
from .io.schema import PHASE_DIAGRAM_KIND

__all__ = ["PhaseDiagramStore"]


class PhaseDiagramStore:
    """The file of a phase-diagram sweep: its betas and ensemble, and the statistics of each
    finished beta (``beta_statistics``), so that a sweep resumes and reopens from its file.

    Layout: a ``particles.io.ResultStore`` of kind "phase_diagram" whose config is the betas
    and ``ClusteringEnsemble.as_dict()``, with one key ``beta_<k:04d>`` per finished beta k.

    Args:
        path: the HDF5 file.
        betas, ensemble: the sweep, to create the file or reopen it (a different sweep in an
            existing file is a ValueError naming the first differing setting); both None to
            open an existing file with the sweep stored in it.
        overwrite: replace an existing file.

    Example:
        >>> from particles import ClusteringEnsemble, beta_statistics
        >>> ensemble = ClusteringEnsemble(n=4, batch=2, t_max=0.2, checkpoints=2)
        >>> store = PhaseDiagramStore("sweep.h5", [0.5, 1.0], ensemble)
        >>> for k in store.todo():
        ...     store.save(k, beta_statistics(store.betas[k], ensemble))
        >>> PhaseDiagramStore("sweep.h5").load().density.shape
        (2, 2)
    """

    def __init__(self, path, betas=None, ensemble=None, *, overwrite=False):
        if (betas is None) != (ensemble is None):
            raise TypeError("betas and ensemble must be given together (a new sweep) or both None (a stored one)")
        if betas is None:
            self._store = ResultStore(path, kind=PHASE_DIAGRAM_KIND)
            config = self._store.config
            self.betas = ClusteringEnsemble.check_betas(config["betas"])
            self.ensemble = ClusteringEnsemble.from_dict(config)
            return
        if not isinstance(ensemble, ClusteringEnsemble):
            raise TypeError(f"ensemble must be a particles.ClusteringEnsemble, got {type(ensemble).__name__}")
        self.betas = ClusteringEnsemble.check_betas(betas)
        self.ensemble = ensemble
        config = {"betas": np.asarray(self.betas), **ensemble.as_dict()}
        self._store = ResultStore(path, config, overwrite=overwrite, kind=PHASE_DIAGRAM_KIND)

    @property
    def path(self):
        return self._store.path

    def done(self, k):
        """True when beta number k is saved."""
        return self._store.done(_key(k))

    def todo(self):
        """Indices of the betas not saved yet, in order."""
        saved = set(self._store.keys())
        return [k for k in range(len(self.betas)) if _key(k) not in saved]

    def save(self, k, statistics):
        """Save the ``beta_statistics`` of beta number k."""
        if not 0 <= k < len(self.betas):
            raise ValueError(f"k must be in [0, {len(self.betas)}), got {k}")
        self._store.save(_key(k), **statistics)

    def load(self):
        """The ``PhaseDiagram`` of the finished sweep.

        Raises:
            ValueError: some betas are not finished (the message says how many are).
        """
        missing = self.todo()
        if missing:
            raise ValueError(
                f"{self.path} holds {len(self.betas) - len(missing)} of {len(self.betas)} betas of its "
                f"phase diagram; rerun the sweep to finish it"
            )
        rows = [self._store.load(_key(k)) for k in range(len(self.betas))]
        return PhaseDiagram.from_rows(self.ensemble, self.betas, rows)


def _key(k):
    return f"beta_{k:04d}"
