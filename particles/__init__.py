"""Self-attention dynamics as interacting particles on the sphere (Geshkovski et al., 2023)."""

import importlib.metadata

# torch before anything starts Numba's OpenMP thread pool: torch ships its own libgomp, and
# one loaded after Numba's has started resolves to Numba's (the same soname) and shares its
# pool, where torch's elementwise passes ran 10x slower (measured: dense-field float32 steps
# at n = 32, d = 64, 64 systems, 2.8 ms against 0.25 ms). tests/particles/test_import_order.py.
import torch  # noqa: F401  isort: skip

from ._open import load as load
from ._params import SimulationParams as SimulationParams
from ._phase_diagram import ClusteringEnsemble as ClusteringEnsemble
from ._phase_diagram import PhaseDiagram as PhaseDiagram
from ._phase_diagram import beta_generator as beta_generator
from ._phase_diagram import beta_statistics as beta_statistics
from ._phase_diagram import phase_diagram as phase_diagram
from ._phase_diagram_store import PhaseDiagramStore as PhaseDiagramStore
from ._simulate import simulate as simulate
from ._step_check import StepSizeWarning as StepSizeWarning
from ._step_check import check_step as check_step
from ._trajectory import Trajectory as Trajectory
from .critical_points import CriticalPoint as CriticalPoint
from .critical_points import classify_critical_point as classify_critical_point
from .critical_points import nearby_critical_point as nearby_critical_point
from .critical_points import refine_critical_point as refine_critical_point
from .energy_derivatives import energy_gradient as energy_gradient
from .energy_derivatives import energy_hessian as energy_hessian
from .io import RunFile as RunFile
from .observables import cluster_labels as cluster_labels
from .observables import clustering_density as clustering_density
from .observables import count_clusters as count_clusters
from .observables import energy as energy
from .observables import normalized_energy as normalized_energy
from .observables import span_dimension as span_dimension
from .observables import token_covariance as token_covariance
from .sphere import inner_products as inner_products
from .sphere import sample_sphere as sample_sphere

__version__ = importlib.metadata.version("attention-dynamics")

__all__ = [
    # simulation
    "simulate",
    "Trajectory",
    "SimulationParams",
    "StepSizeWarning",
    "check_step",
    # storage (HDF5, see particles.io); load reads any file of the package
    "RunFile",
    "load",
    # configurations
    "sample_sphere",
    "inner_products",
    # observables
    "clustering_density",
    "count_clusters",
    "cluster_labels",
    "energy",
    "normalized_energy",
    "span_dimension",
    "token_covariance",
    # critical points of the interaction energy (Q = K = V = I)
    "energy_gradient",
    "energy_hessian",
    "classify_critical_point",
    "CriticalPoint",
    "refine_critical_point",
    "nearby_critical_point",
    # sweeps
    "phase_diagram",
    "beta_statistics",
    "beta_generator",
    "ClusteringEnsemble",
    "PhaseDiagram",
    "PhaseDiagramStore",
]
