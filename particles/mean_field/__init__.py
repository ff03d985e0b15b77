"""The mean-field limit of self-attention on the circle (Geshkovski et al., 2023): the
continuity equation of the token density, solved by finite volumes, and the distances and
observables that connect it with the particle system.

One concept per module:

- ``grid``: the uniform grid, densities on it, the minimum grid for beta;
- ``kernel``: the velocity as a circular convolution by FFT (Q, K, V scalar multiples of
  rotations);
- ``scheme``: SSP-RK3 time stepping of the MUSCL finite-volume scheme (``_flux_kernels``);
- ``solve``: ``solve``, the entry point, with HDF5 storage through ``particles.io``;
- ``energy``: the interaction energy and the energy identity;
- ``stability``: growth rates of Fourier modes around the uniform density;
- ``wasserstein``: W1 and W2 on the circle, sliced and exact W2 on the sphere;
- ``sampling``: particles drawn from a density, and histograms back;
- ``clusters``: cluster counts of a density and the first merge time.
"""

from .clusters import cluster_counts as cluster_counts
from .clusters import coarsen as coarsen
from .clusters import first_merge_time as first_merge_time
from .energy import empirical_energy as empirical_energy
from .energy import energy as energy
from .energy import energy_identity_defect as energy_identity_defect
from .energy import energy_rate as energy_rate
from .grid import grid as grid
from .grid import minimum_grid as minimum_grid
from .grid import normalise as normalise
from .sampling import angles_to_points as angles_to_points
from .sampling import histogram_density as histogram_density
from .sampling import points_to_angles as points_to_angles
from .sampling import sample_angles as sample_angles
from .solve import MeanFieldSolution as MeanFieldSolution
from .solve import load_solution as load_solution
from .solve import solve as solve
from .stability import growth_rates as growth_rates
from .wasserstein import great_circle_projections as great_circle_projections
from .wasserstein import sliced_wasserstein_sphere as sliced_wasserstein_sphere
from .wasserstein import wasserstein_circle as wasserstein_circle
from .wasserstein import wasserstein_sphere as wasserstein_sphere

__all__ = [
    # solver
    "solve",
    "MeanFieldSolution",
    "load_solution",
    # grid
    "grid",
    "minimum_grid",
    "normalise",
    # energy and stability
    "energy",
    "empirical_energy",
    "energy_rate",
    "energy_identity_defect",
    "growth_rates",
    # distances
    "wasserstein_circle",
    "sliced_wasserstein_sphere",
    "wasserstein_sphere",
    "great_circle_projections",
    # particles <-> density
    "sample_angles",
    "angles_to_points",
    "points_to_angles",
    "histogram_density",
    # clusters
    "cluster_counts",
    "coarsen",
    "first_merge_time",
]
