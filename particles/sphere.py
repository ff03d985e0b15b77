"""Points on the unit sphere S^{d-1}: sampling and Gram matrices."""

import numpy as np

from .checks import as_float_array, check_dtype, check_int

__all__ = ["sample_sphere", "inner_products"]


def sample_sphere(n, d, *, batch=None, seed=None, dtype="float64"):
    """Tokens drawn independently and uniformly on S^{d-1}.

    Args:
        n: number of tokens, >= 1.
        d: ambient dimension, >= 2.
        batch: number of independent systems, or None for a single one.
        seed: seed of ``numpy.random.default_rng`` (int, SeedSequence or Generator).
        dtype: "float64" (default) or "float32".

    Returns:
        Array (n, d), or (batch, n, d) when ``batch`` is given, with unit rows.
    """
    n = check_int("n", n, low=1)
    d = check_int("d", d, low=2)
    if batch is not None:
        batch = check_int("batch", batch, low=1)
    dtype = check_dtype("dtype", dtype)
    rng = np.random.default_rng(seed)
    shape = (n, d) if batch is None else (batch, n, d)
    # Normalised Gaussians are uniform on the sphere; normalise in float64, then cast.
    x = rng.standard_normal(shape)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x.astype(dtype)


def inner_products(x):
    """Gram matrices <x_i, x_j> of token configurations.

    Args:
        x: (..., n, d) array.

    Returns:
        (..., n, n) array.
    """
    x = as_float_array("x", x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., n, d), got shape {x.shape}")
    return x @ np.swapaxes(x, -1, -2)
