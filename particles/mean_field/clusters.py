"""Clusters of a density on the circle, and the time of their first merge.

A cluster is a connected arc (periodic) of the coarse grid where the density exceeds
``threshold`` and that holds at least ``min_mass``; the same definition applies to the PDE's
density and to a histogram of particles on the same coarse grid, so their counts compare.
"""

import numpy as np

from ..checks import check_int, check_real


def coarsen(rho, bins):
    """(..., M) densities averaged onto ``bins`` cells (M must be a multiple of bins; the
    coarse cell k is centred at 2 pi k / bins, like the fine one)."""
    rho = np.asarray(rho, dtype=np.float64)
    M = rho.shape[-1]
    bins = check_int("bins", bins, low=1)
    if M % bins:
        raise ValueError(f"bins must divide the grid's M = {M} cells, got {bins}")
    r = M // bins
    # Coarse cell k spans fine cells k r - r/2 .. k r + r/2: roll so that it is contiguous.
    shifted = np.roll(rho, r // 2, axis=-1)
    if r % 2 == 0 and r > 1:
        # Even ratios split the two end cells in halves between neighbours.
        blocks = shifted.reshape(rho.shape[:-1] + (bins, r))
        left_half = 0.5 * np.roll(shifted, -r, axis=-1).reshape(blocks.shape)[..., 0]
        return (blocks.sum(-1) - 0.5 * blocks[..., 0] + left_half) / r
    return shifted.reshape(rho.shape[:-1] + (bins, r)).mean(-1)


def cluster_masses(rho, *, threshold, min_mass):
    """Masses of the clusters of one density (M,): arcs where rho > threshold holding at least
    min_mass, in order of their first cell."""
    rho = np.asarray(rho, dtype=np.float64)
    M = rho.shape[0]
    mass = rho * 2.0 * np.pi / M
    above = rho > threshold
    if above.all():
        return [float(mass.sum())] if mass.sum() >= min_mass else []
    start = int(np.argmin(above))  # a cell below: arcs do not wrap past it
    above, mass = np.roll(above, -start), np.roll(mass, -start)
    out, current, inside = [], 0.0, False
    for flag, m in zip(above, mass):
        if flag:
            current += m
            inside = True
        elif inside:
            if current >= min_mass:
                out.append(current)
            current, inside = 0.0, False
    if inside and current >= min_mass:
        out.append(current)
    return out


def cluster_counts(rho, *, threshold, min_mass=0.05):
    """(T,) cluster counts of densities (T, M) (see ``cluster_masses``).

    Args:
        rho: (T, M) or (M,) densities. threshold: density level, > 0. min_mass: in [0, 1].
    """
    threshold = check_real("threshold", threshold, low=0.0, low_inclusive=False)
    min_mass = check_real("min_mass", min_mass, low=0.0, high=1.0)
    rows = np.atleast_2d(np.asarray(rho, dtype=np.float64))
    return np.array([len(cluster_masses(r, threshold=threshold, min_mass=min_mass)) for r in rows])


def first_merge_time(ts, counts, clusters=None):
    """The time from which the cluster count stays below ``clusters`` (default: its largest
    value): the first merge of the metastable configuration. NaN when the count ends at or
    above it.

    Counting from the last frame backwards makes the time insensitive to the flicker of a
    noisy histogram while the clusters form.

    Args:
        ts: (T,) times. counts: (T,) cluster counts. clusters: the count of the metastable
            configuration (pass the PDE's to compare particle runs with it).

    Example:
        >>> first_merge_time([0.0, 1.0, 2.0, 3.0, 4.0], [1, 3, 2, 3, 2])
        4.0
    """
    ts, counts = np.asarray(ts, dtype=np.float64), np.asarray(counts)
    if ts.shape != counts.shape or ts.ndim != 1:
        raise ValueError(f"ts and counts must be 1-D of the same length, got {ts.shape} and {counts.shape}")
    if counts.size == 0:
        return float("nan")
    level = counts.max() if clusters is None else clusters
    at_or_above = np.flatnonzero(counts >= level)
    if at_or_above.size == 0 or at_or_above[-1] == counts.size - 1:
        return float("nan")
    return float(ts[at_or_above[-1] + 1])
