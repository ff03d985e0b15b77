"""Matrix-free estimators of traces, norms, diagonals and spectra; each returns a value and a standard error."""

from .base import Estimate as Estimate
from .diagonal import diagonal as diagonal
from .diagonal import hutchinson_diagonal as hutchinson_diagonal
from .eigen import top_eigenvalues as top_eigenvalues
from .frobenius import exact_squared_frobenius as exact_squared_frobenius
from .frobenius import frobenius_norm as frobenius_norm
from .frobenius import hutchinson_squared_frobenius as hutchinson_squared_frobenius
from .slq import SpectralDensity as SpectralDensity
from .slq import lanczos as lanczos
from .slq import spectral_density as spectral_density
from .trace import hutchinson_trace as hutchinson_trace
from .trace import hutchpp_trace as hutchpp_trace
from .trace import trace as trace

__all__ = [
    "Estimate",
    # trace
    "trace",
    "hutchinson_trace",
    "hutchpp_trace",
    # Frobenius norm
    "frobenius_norm",
    "hutchinson_squared_frobenius",
    "exact_squared_frobenius",
    # diagonal
    "diagonal",
    "hutchinson_diagonal",
    # spectrum
    "top_eigenvalues",
    "spectral_density",
    "SpectralDensity",
    "lanczos",
]
