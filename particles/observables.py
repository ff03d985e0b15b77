"""Order parameters of token configurations: clustering, energy, dimension of the span.

All functions take states of shape (..., n, d) (one system, a batch, a trajectory, ...) and
return one value per configuration, shape (...).
"""

import numpy as np

from . import _observable_kernels
from .checks import as_float_array, check_real

__all__ = [
    "clustering_density",
    "count_clusters",
    "cluster_labels",
    "energy",
    "normalized_energy",
    "span_dimension",
    "token_covariance",
]


def _configurations(x, *, min_tokens=1):
    x = as_float_array("x", x)
    if x.ndim < 2 or x.shape[-1] < 1 or x.shape[-2] < min_tokens:
        raise ValueError(f"x must have shape (..., n, d) with n >= {min_tokens}, got shape {x.shape}")
    return x


def _pair_statistics(x, density_threshold, link_threshold):
    lead, (n, d) = x.shape[:-2], x.shape[-2:]
    # The kernels take coordinate-major states padded to 2 or a multiple of 4 coordinates.
    dp = 2 if d == 2 else -(-d // 4) * 4
    M = int(np.prod(lead, dtype=np.int64))
    packed = np.zeros((M, dp, n))
    packed[:, :d, :] = np.swapaxes(x.reshape((M, n, d)), 1, 2)
    close = np.empty(M, np.int64)
    labels = np.empty((M, n), np.int64)
    counts = np.empty(M, np.int64)
    rows, stacks = _observable_kernels.scratch(M, n)
    _observable_kernels.pair_statistics(packed, density_threshold, link_threshold, rows, stacks, close, labels, counts)
    return close.reshape(lead), labels.reshape(lead + (n,)), counts.reshape(lead)


def clustering_density(x, threshold=0.999):
    """Fraction of ordered pairs i != j with <x_i, x_j> > threshold.

    The colour of the phase diagrams of Geshkovski et al. (2023), who pool it over systems.

    Args:
        x: (..., n, d) configurations, n >= 2.
        threshold: inner-product threshold.

    Returns:
        (...) float64 array in [0, 1].
    """
    x = _configurations(x, min_tokens=2)
    threshold = check_real("threshold", threshold)
    n = x.shape[-2]
    close, _, _ = _pair_statistics(x, threshold, np.inf)
    return close / (n * (n - 1))


def cluster_labels(x, tol=1e-3):
    """Single-linkage clusters: tokens joined by chains of pairs with <x_i, x_j> > 1 - tol.

    Unlike the rank of the thresholded Gram matrix (the authors' count), this counts a chain
    a ~ b ~ c with a !~ c as one cluster, and two tokens as one cluster only when linked.

    Args:
        x: (..., n, d) configurations.
        tol: linkage tolerance, in (0, 2).

    Returns:
        labels: (..., n) int64, numbered 0, 1, ... in order of first token.
        sizes: for one configuration, the int64 array of cluster sizes (indexed by label);
            for several, a list of such arrays in C order of the leading axes.
    """
    x = _configurations(x)
    tol = check_real("tol", tol, low=0.0, low_inclusive=False)
    _, labels, counts = _pair_statistics(x, np.inf, 1.0 - tol)
    flat_labels = labels.reshape((-1, labels.shape[-1]))
    sizes = [np.bincount(lab, minlength=k) for lab, k in zip(flat_labels, counts.ravel())]
    return labels, (sizes[0] if labels.ndim == 1 else sizes)


def count_clusters(x, tol=1e-3):
    """Number of single-linkage clusters at <x_i, x_j> > 1 - tol (see ``cluster_labels``).

    Returns:
        (...) int64 array.
    """
    x = _configurations(x)
    tol = check_real("tol", tol, low=0.0, low_inclusive=False)
    return _pair_statistics(x, np.inf, 1.0 - tol)[2]


def energy(x, beta, *, shifted=False):
    r"""Interaction energy $E_\beta = \frac{1}{2\beta n^2}\sum_{i,j} e^{\beta\langle x_i, x_j\rangle}$.

    Non-decreasing along SA and USA with Q = K = V = I (theory note, section 1).

    Args:
        x: (..., n, d) configurations.
        beta: >= 0; beta = 0 needs ``shifted=True``.
        shifted: return $E_\beta - \frac{1}{2\beta}$ instead, which has the finite limit
            $|\sum_i x_i|^2 / (2n^2)$ as beta -> 0 (computed with expm1, exact there).

    Returns:
        (...) float64 array.
    """
    x = _configurations(x)
    beta = check_real("beta", beta, low=0.0)
    if beta == 0.0 and not shifted:
        raise ValueError(
            "beta = 0 makes E_beta = 1/(2 beta) + ... infinite; pass shifted=True "
            "for E_beta - 1/(2 beta), whose limit is |sum_i x_i|^2 / (2 n^2)"
        )
    n = x.shape[-2]
    gram = x.astype(np.float64) @ np.swapaxes(x, -1, -2).astype(np.float64)
    if shifted:
        terms = np.expm1(beta * gram) / beta if beta > 0 else gram
        return terms.sum(axis=(-2, -1)) / (2 * n**2)
    return np.exp(beta * gram).sum(axis=(-2, -1)) / (2 * beta * n**2)


def normalized_energy(x, beta):
    r"""$2\beta e^{-\beta} E_\beta \in (0, 1]$, equal to 1 exactly for a single cluster."""
    x = _configurations(x)
    beta = check_real("beta", beta, low=0.0, low_inclusive=False)
    n = x.shape[-2]
    gram = x.astype(np.float64) @ np.swapaxes(x, -1, -2).astype(np.float64)
    return np.exp(beta * (gram - 1.0)).sum(axis=(-2, -1)) / n**2


def span_dimension(x, tol=1e-3):
    """Number of eigenvalues of the Gram matrix above tol (the authors' ``plotdim``).

    Args:
        x: (..., n, d) configurations.
        tol: eigenvalue threshold (the authors use 1e-3).

    Returns:
        (...) int64 array.
    """
    x = _configurations(x)
    tol = check_real("tol", tol, low=0.0)
    # The nonzero eigenvalues of X X^T (n x n) are those of X^T X (d x d): use the smaller.
    xf = x.astype(np.float64)
    small = np.swapaxes(xf, -1, -2) @ xf if x.shape[-1] <= x.shape[-2] else xf @ np.swapaxes(xf, -1, -2)
    return (np.linalg.eigvalsh(small) > tol).sum(axis=-1)


def token_covariance(x):
    """Sigma = X^T X / n, (..., d, d), and its eigenvalues in decreasing order, (..., d).

    Clustering drives Sigma toward rank one; the Hessian of attention depends on it.
    """
    x = _configurations(x).astype(np.float64)
    sigma = np.swapaxes(x, -1, -2) @ x / x.shape[-2]
    return sigma, np.linalg.eigvalsh(sigma)[..., ::-1]
