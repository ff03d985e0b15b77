"""How a configuration in R^d, d >= 4, is shown on the sphere S^2 of the picture."""

import numpy as np


def random_projection(d, seed):
    """(d, 3) matrix with orthonormal columns: QR of a Gaussian matrix, signs fixed."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, 3)))
    return q * np.sign(np.diag(r))


def to_sphere(y):
    """Each row of ``y`` pushed radially onto the unit sphere."""
    norms = np.linalg.norm(y, axis=-1, keepdims=True)
    # A token almost orthogonal to the projected subspace has no meaningful direction.
    return y / np.maximum(norms, 1e-12)
