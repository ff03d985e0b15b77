"""Self-attention dynamics as interacting particles on the sphere (Geshkovski et al., 2023)."""
from ._params import SimulationParams as SimulationParams
from ._simulate import simulate as simulate
from ._trajectory import Trajectory as Trajectory
from .sphere import inner_products as inner_products
from .sphere import sample_sphere as sample_sphere

__version__ = "0.1.0"

__all__ = [
    # simulation
    "simulate",
    "Trajectory",
    "SimulationParams",
    # configurations
    "sample_sphere",
    "inner_products",
]
