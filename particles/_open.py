"""``particles.load``: any file this package writes, read into its result object."""

from . import io
from ._phase_diagram_store import PhaseDiagramStore
from .io.schema import DENSITY_KIND, PHASE_DIAGRAM_KIND, RUN_KIND

__all__ = ["load"]


def load(path):
    """Read a file written by this package into its result, with the settings stored in it.

    What the file holds (``particles.io.kind``) decides the result:

    - a run (``simulate(..., store=...)``, ``io.save``): a ``Trajectory`` whose frames are
      read lazily (also while the run is still writing the file) and its per-frame
      observables in ``traj.observables`` (e.g. the curvature along the flow of
      ``hessian.along_trajectory``, assembled into a ``FlowCurvature`` by
      ``hessian.flow.read_curvature``);
    - a phase diagram (``PhaseDiagramStore``, ``python -m simulations.phase_diagram``): a
      ``PhaseDiagram`` with its ``ClusteringEnsemble``;
    - a density trajectory (``particles.mean_field.solve(..., store=...)``): a
      ``particles.mean_field.MeanFieldSolution``;
    - any other sweep (``io.ResultStore``, the studies' files): ``io.SweepResults`` with the
      config and every saved piece (the study's own ``load`` gives its result type).

    ``particles.io.info(path)`` describes any of them without reading the data.

    Args:
        path: the file (str or os.PathLike).

    Raises:
        FileNotFoundError: no such file.
        StoreError: not a file of this package, or damaged.
        ValueError: a phase diagram whose sweep is not finished (rerun it).

    Example:
        >>> from particles import sample_sphere, simulate
        >>> _ = simulate(sample_sphere(8, 3, seed=0), beta=1.0, t_max=1.0, dt=0.1, store="any.h5")
        >>> load("any.h5").xs.shape
        (11, 8, 3)
    """
    kind = io.kind(path)
    if kind == RUN_KIND:
        return io.load(path)
    if kind == PHASE_DIAGRAM_KIND:
        return PhaseDiagramStore(path).load()
    if kind == DENSITY_KIND:
        from .mean_field import load_solution  # the mean-field solver only when its file is read

        return load_solution(path)
    return io.read_results(path)
