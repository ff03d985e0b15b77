"""Numba kernels of the energy-like pairwise observables: sums over all pairs (i, j) of a function
of <x_i, x_j>, one value per configuration, with no (n, n) array.

States are coordinate-major, (M, d, n) float64, as in ``_kernels``, so that loops over tokens j
have unit stride. Each configuration m is summed by one thread in a fixed order, so results do
not depend on the number of threads or on how configurations are split into blocks.
"""

import math

import numpy as np
from numba import njit, prange

from ._vexp import vexp

# Sums over j may be reassociated so that they vectorise; the order is fixed by the compiled
# code, so the results still do not depend on threads or blocks.
_FASTMATH_SUMS = {"contract", "reassoc"}


@njit(inline="always", fastmath=_FASTMATH_SUMS)
def _gram_row(x, m, i, row):
    """row[j] <- <x_i, x_j> for j >= i; returns 0 when the row is finite, NaN otherwise."""
    d, n = x.shape[1], x.shape[2]
    for j in range(i, n):
        row[j] = 0.0
    for k in range(d):
        xk = x[m, k, i]
        for j in range(i, n):
            row[j] += xk * x[m, k, j]
    finite = 0.0
    for j in range(i, n):
        finite += row[j] * 0.0
    return finite


def _make_exp_pair_sums(G):
    """``exp_pair_sums`` for states padded to a multiple of G coordinates (G = 2 or 4): the
    first G coordinates of a Gram row and its exponentials share one loop over j with G fixed
    at compile time, so it vectorises. Whole rows (each pair twice) measured faster than the
    upper triangle, whose short, varying loops vectorise badly. The closure holds only the
    integer G, which keeps Numba's cache valid across processes."""

    def exp_pair_sums(x, scale, offset, out):
        M, d, n = x.shape
        for m in prange(M):
            row = np.empty(n)
            total = 0.0
            finite = 0.0
            for i in range(n):
                for j in range(n):
                    row[j] = 0.0
                for c in range(G, d):
                    xc = x[m, c, i]
                    for j in range(n):
                        row[j] += xc * x[m, c, j]
                x0, x1 = x[m, 0, i], x[m, 1, i]
                x2 = x[m, 2, i] if G == 4 else 0.0
                x3 = x[m, 3, i] if G == 4 else 0.0
                for j in range(n):
                    g = row[j] + x0 * x[m, 0, j] + x1 * x[m, 1, j]
                    if G == 4:
                        g += x2 * x[m, 2, j] + x3 * x[m, 3, j]
                    # g * 0 is 0 for finite g and NaN otherwise (vexp assumes finite input).
                    finite += g * 0.0
                    total += vexp(scale * (g - offset))
            out[m] = total if finite == 0.0 else math.nan

    exp_pair_sums.__doc__ = """out[m] = sum_{i,j} exp(scale (<x_i, x_j> - offset)) for x (M, dp, n); NaN for
        non-finite states."""
    exp_pair_sums.__qualname__ = exp_pair_sums.__name__ = f"exp_pair_sums{G}"
    return njit(cache=True, parallel=True, fastmath=_FASTMATH_SUMS)(exp_pair_sums)


_exp_pair_sums2 = _make_exp_pair_sums(2)
_exp_pair_sums4 = _make_exp_pair_sums(4)


def padded_dimension(d):
    """The coordinates ``exp_pair_sums`` takes for dimension d: 2, or d rounded up to a multiple of 4."""
    return 2 if d == 2 else -(-d // 4) * 4


def exp_pair_sums(x, scale, offset, out):
    """out[m] = sum_{i,j} exp(scale (<x_i, x_j> - offset)) for x (M, dp, n), dp from
    ``padded_dimension`` (zero-padded); NaN for non-finite states."""
    if x.shape[1] == 2:
        return _exp_pair_sums2(x, scale, offset, out)
    if x.shape[1] % 4:
        raise ValueError(f"x must be padded to 2 or a multiple of 4 coordinates, got {x.shape[1]}")
    return _exp_pair_sums4(x, scale, offset, out)


@njit(cache=True, parallel=True)
def expm1_pair_sums(x, beta, out):
    """out[m] = sum_{i,j} expm1(beta <x_i, x_j>) / beta (its limit <x_i, x_j> at beta = 0) for x (M, d, n).

    expm1 keeps the relative accuracy of terms near 0 (small beta); a scalar libm call, since the
    shifted energy is meant for small beta, not for speed.
    """
    M, _, n = x.shape
    for m in prange(M):
        row = np.empty(n)
        total = 0.0
        finite = 0.0
        for i in range(n):
            finite += _gram_row(x, m, i, row)
            upper = 0.0
            if beta > 0.0:
                for j in range(i + 1, n):
                    upper += math.expm1(beta * row[j])
                total += (2.0 * upper + math.expm1(beta * row[i])) / beta
            else:
                for j in range(i + 1, n):
                    upper += row[j]
                total += 2.0 * upper + row[i]
        out[m] = total if finite == 0.0 else math.nan
