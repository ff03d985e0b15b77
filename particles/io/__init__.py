"""HDF5 storage of runs and sweep results: the only package that knows the file layout.

One concept per module:

- ``schema``: the H5MD layout (documented there), schema and version checks, parameters
  and plain values;
- ``locking``: opening files under HDF5's and our locks, with retries, and HDF5 errors
  turned into ``StoreError`` messages that name the file;
- ``layout``, ``checkpoint``: the datasets of a run file and its checksummed checkpoint;
- ``writer``: ``RunFile`` (the ``store`` of ``particles.simulate``), the threaded SWMR
  ``RunWriter`` that ``simulate``'s time loop hands its frames to, and ``save``;
- ``resume``: continuing a stopped run file, and ``repair``;
- ``reader``: ``load``, ``info`` (of any file of the package), ``kind``, ``last_state`` and
  ``LazyFrames``;
- ``observables``: per-frame quantities beside a run's frames;
- ``results``: ``ResultStore``, the results of a sweep, and ``read_results``;
- ``density``: density trajectories of the mean-field solver (``DensityWriter``,
  ``read_density``).

This package never imports the solver: ``simulate`` owns the time loop.
"""

from .density import DensityTrajectory, DensityWriter, read_density
from .errors import StoreError
from .layout import DEFAULT_COMPRESSION
from .observables import Observable, read_observable, write_observable
from .reader import LazyFrames, info, kind, last_state, load
from .results import ResultStore, SweepResults, read_results
from .resume import repair
from .schema import SCHEMA_VERSION
from .writer import DEFAULT_FLUSH_EVERY, RunFile, RunWriter, open_run, save

__all__ = [
    "RunFile",
    "load",
    "save",
    "info",
    "last_state",
    "write_observable",
    "read_observable",
    "repair",
    "ResultStore",
    "SweepResults",
    "read_results",
    "kind",
    "DensityWriter",
    "DensityTrajectory",
    "read_density",
    "LazyFrames",
    "Observable",
    "StoreError",
    "open_run",
    "RunWriter",
    "SCHEMA_VERSION",
    "DEFAULT_COMPRESSION",
    "DEFAULT_FLUSH_EVERY",
]
