"""Reproductions of the Transformer-Hessian experiments (Ormaniec, Dangel & Singh, 2025; theory note §3).

Data (5-digit addition), the sigma-growth sweep with exact block norms, the heterogeneity heatmap and
histograms, their HDF5 files and figures. ``simulations/hessian_growth.py`` and
``simulations/hessian_heterogeneity.py`` are the command lines.
"""

from .addition import addition_data as addition_data
from .addition import answer_positions as answer_positions
from .block_norms import SplitNorms as SplitNorms
from .block_norms import hutchpp_split_norms as hutchpp_split_norms
from .block_norms import kron_sum_squared_frobenius as kron_sum_squared_frobenius
from .block_norms import mlp_layer_norms as mlp_layer_norms
from .block_norms import transformer_last_layer_norms as transformer_last_layer_norms
from .growth import GrowthConfig as GrowthConfig
from .growth import fit_slope as fit_slope
from .growth import format_slope_table as format_slope_table
from .growth import run_growth as run_growth
from .growth import sigma_grid as sigma_grid
from .growth import slope_table as slope_table
from .growth import theory_exponent as theory_exponent

__all__ = [
    # data
    "addition_data",
    "answer_positions",
    # block norms
    "SplitNorms",
    "transformer_last_layer_norms",
    "mlp_layer_norms",
    "hutchpp_split_norms",
    "kron_sum_squared_frobenius",
    # growth sweep
    "GrowthConfig",
    "sigma_grid",
    "run_growth",
    "theory_exponent",
    "fit_slope",
    "slope_table",
    "format_slope_table",
]
