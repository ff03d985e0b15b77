"""Order parameters of token configurations: clustering, energy, dimension of the span.

All functions take states of shape (..., n, d) (one system, a batch, a trajectory, ...) and
return one value per configuration, shape (...). A stored trajectory's lazy ``traj.xs``
(``particles.io.LazyFrames``) is read block by block.

Configurations are processed in blocks of about ``BLOCK_BYTES``, so that the memory used on
top of the input and the result does not grow with the number of frames or systems: no
(..., n, n) Gram or exponential array is formed.
"""

import numpy as np

from . import _observable_kernels, _pair_kernels
from .checks import as_float_array, check_real
from .io import LazyFrames

__all__ = [
    "clustering_density",
    "count_clusters",
    "cluster_labels",
    "energy",
    "normalized_energy",
    "span_dimension",
    "token_covariance",
]

#: Bytes of float64 configurations handled at once (the scratch of the kernels scales with it).
BLOCK_BYTES = 1 << 23


def _configurations(x, *, min_tokens=1):
    if isinstance(x, LazyFrames):
        if x.dtype not in (np.float64, np.float32):
            raise TypeError(f"x must be a float64 or float32 array, got dtype {x.dtype}")
    else:
        x = as_float_array("x", x)
    if x.ndim < 2 or x.shape[-1] < 1 or x.shape[-2] < min_tokens:
        raise ValueError(f"x must have shape (..., n, d) with n >= {min_tokens}, got shape {tuple(x.shape)}")
    return x


def _blocks(x):
    """Yield (start, block): consecutive configurations of x in C order of its leading axes,
    block (b, n, d) in x's dtype, about ``BLOCK_BYTES`` each (as float64)."""
    lead, (n, d) = tuple(x.shape[:-2]), tuple(x.shape[-2:])
    M = int(np.prod(lead, dtype=np.int64))
    per_block = max(1, BLOCK_BYTES // (8 * n * d))
    if isinstance(x, np.ndarray):
        try:
            flat = np.reshape(x, (M, n, d), copy=False)
        except ValueError:
            flat = None  # a strided view that no flat view describes: blocks along the first axis
        if flat is not None:
            for start in range(0, M, per_block):
                yield start, flat[start : start + per_block]
            return
    per_item = M // x.shape[0] if x.shape[0] else 0
    items = max(1, per_block // max(1, per_item))
    for first in range(0, x.shape[0], items):
        yield first * per_item, np.asarray(x[first : first + items]).reshape((-1, n, d))


def _packed(block, dp):
    """(b, n, d) configurations as float64 (b, dp, n), coordinate-major, zero-padded to dp >= d."""
    b, n, d = block.shape
    packed = np.zeros((b, dp, n)) if dp > d else np.empty((b, dp, n))
    packed[:, :d, :] = np.swapaxes(block, 1, 2)
    return packed


def _pair_statistics(x, density_threshold, link_threshold, *, with_labels=False):
    lead, (n, d) = tuple(x.shape[:-2]), tuple(x.shape[-2:])
    # The kernels take coordinate-major states padded to 2 or a multiple of 4 coordinates.
    dp = _pair_kernels.padded_dimension(d)
    M = int(np.prod(lead, dtype=np.int64))
    close = np.empty(M, np.int64)
    counts = np.empty(M, np.int64)
    labels = np.empty((M, n), np.int64) if with_labels else None
    for start, block in _blocks(x):
        stop = start + len(block)
        rows, stacks = _observable_kernels.scratch(len(block), n)
        block_labels = labels[start:stop] if with_labels else np.empty((len(block), n), np.int64)
        _observable_kernels.pair_statistics(
            _packed(block, dp),
            density_threshold,
            link_threshold,
            rows,
            stacks,
            close[start:stop],
            block_labels,
            counts[start:stop],
        )
    return close.reshape(lead), (labels.reshape(lead + (n,)) if with_labels else None), counts.reshape(lead)


def _pair_sums(x, kernel, *args):
    """One float64 per configuration from a ``_pair_kernels`` kernel, block by block."""
    lead, d = tuple(x.shape[:-2]), x.shape[-1]
    out = np.empty(int(np.prod(lead, dtype=np.int64)))
    dp = _pair_kernels.padded_dimension(d)
    for start, block in _blocks(x):
        kernel(_packed(block, dp), *args, out[start : start + len(block)])
    return out.reshape(lead)


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
    _, labels, counts = _pair_statistics(x, np.inf, 1.0 - tol, with_labels=True)
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
    if shifted:
        return _pair_sums(x, _pair_kernels.expm1_pair_sums, beta) / (2 * n**2)
    return _pair_sums(x, _pair_kernels.exp_pair_sums, beta, 0.0) / (2 * beta * n**2)


def normalized_energy(x, beta):
    r"""$2\beta e^{-\beta} E_\beta \in (0, 1]$, equal to 1 exactly for a single cluster."""
    x = _configurations(x)
    beta = check_real("beta", beta, low=0.0, low_inclusive=False)
    n = x.shape[-2]
    return _pair_sums(x, _pair_kernels.exp_pair_sums, beta, 1.0) / n**2


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
    lead = tuple(x.shape[:-2])
    out = np.empty(int(np.prod(lead, dtype=np.int64)), np.int64)
    for start, block in _blocks(x):
        xf = block.astype(np.float64)
        # The nonzero eigenvalues of X X^T (n x n) are those of X^T X (d x d): use the smaller.
        small = np.swapaxes(xf, -1, -2) @ xf if xf.shape[-1] <= xf.shape[-2] else xf @ np.swapaxes(xf, -1, -2)
        out[start : start + len(block)] = (np.linalg.eigvalsh(small) > tol).sum(axis=-1)
    return out.reshape(lead)


def token_covariance(x):
    """Sigma = X^T X / n, (..., d, d), and its eigenvalues in decreasing order, (..., d).

    Clustering drives Sigma toward rank one; the Hessian of attention depends on it.
    """
    x = _configurations(x)
    lead, (n, d) = tuple(x.shape[:-2]), tuple(x.shape[-2:])
    M = int(np.prod(lead, dtype=np.int64))
    sigma, eigenvalues = np.empty((M, d, d)), np.empty((M, d))
    for start, block in _blocks(x):
        xf = block.astype(np.float64)
        stop = start + len(block)
        sigma[start:stop] = np.swapaxes(xf, -1, -2) @ xf / n
        eigenvalues[start:stop] = np.linalg.eigvalsh(sigma[start:stop])[..., ::-1]
    return sigma.reshape(lead + (d, d)), eigenvalues.reshape(lead + (d,))
