"""Numba kernels of the clustering observables, on states in the coordinate-major layout
(M, dp, n) of ``_kernels`` (dp = 2 or a multiple of 4, zero-padded) so that loops over
tokens j have unit stride."""

import numpy as np
from numba import njit, prange


def _make_system_statistics(G):
    """The depth-first ``pair_statistics`` of one system, for states padded to a multiple of
    G coordinates (G = 2 or 4): the first G coordinates of a Gram row, the count and the
    link test share one loop over j with G fixed at compile time, so it vectorises. The
    closure holds only the integer G, which keeps Numba's cache valid across processes.
    Compiled on its own (not inlined) so that a fused caller with other fastmath flags runs
    the very same arithmetic."""

    def system_statistics(x, m, density_threshold, link_threshold, row, stack, label):
        _, d, n = x.shape
        for i in range(n):
            label[i] = -1
        count = 0
        k = 0
        for seed in range(n):
            if label[seed] >= 0:
                continue
            label[seed] = k
            stack[0] = seed
            top = 1
            while top > 0:
                top -= 1
                u = stack[top]
                # Coordinates beyond G first, into row; then the fused pass.
                for j in range(n):
                    row[j] = 0.0
                for c in range(G, d):
                    xc = x[m, c, u]
                    for j in range(n):
                        row[j] += xc * x[m, c, j]
                x0, x1 = x[m, 0, u], x[m, 1, u]
                x2 = x[m, 2, u] if G == 4 else 0.0
                x3 = x[m, 3, u] if G == 4 else 0.0
                new_links = 0
                for j in range(n):
                    g = row[j] + x0 * x[m, 0, j] + x1 * x[m, 1, j]
                    if G == 4:
                        g += x2 * x[m, 2, j] + x3 * x[m, 3, j]
                    row[j] = g
                    count += g > density_threshold
                    new_links += (label[j] < 0) & (g > link_threshold)
                count -= row[u] > density_threshold
                if new_links == 0:
                    continue
                for j in range(n):
                    if label[j] < 0 and row[j] > link_threshold:
                        label[j] = k
                        stack[top] = j
                        top += 1
            k += 1
        return count, k

    system_statistics.__qualname__ = system_statistics.__name__ = f"system_statistics{G}"
    return njit(cache=True)(system_statistics)


system_statistics2 = _make_system_statistics(2)
system_statistics4 = _make_system_statistics(4)

_DOC = """Per system m: the ordered pairs i != j with <x_i, x_j> > density_threshold, and the
    single-linkage clusters of the graph <x_i, x_j> > link_threshold.

    Depth-first search: every token is expanded exactly once, so each Gram row is computed
    once (vectorised) and serves both the pair count and the links.

    Args:
        x: (M, dp, n) states.
        rows, stacks: scratch from ``scratch(M, n)``.
        close_pairs: (M,) int64 out, the pair counts.
        labels: (M, n) int64 out, cluster labels numbered 0, 1, ... in order of first token.
        n_clusters: (M,) int64 out.
    """


@njit(cache=True, parallel=True)
def _pair_statistics2(x, density_threshold, link_threshold, rows, stacks, close_pairs, labels, n_clusters):
    for m in prange(x.shape[0]):
        close_pairs[m], n_clusters[m] = system_statistics2(
            x, m, density_threshold, link_threshold, rows[m], stacks[m], labels[m]
        )


@njit(cache=True, parallel=True)
def _pair_statistics4(x, density_threshold, link_threshold, rows, stacks, close_pairs, labels, n_clusters):
    for m in prange(x.shape[0]):
        close_pairs[m], n_clusters[m] = system_statistics4(
            x, m, density_threshold, link_threshold, rows[m], stacks[m], labels[m]
        )


_pair_statistics2.__doc__ = _pair_statistics4.__doc__ = _DOC


# Link sets are bit masks of one int64 word; bit 63 is never needed for n <= 63.
MAX_MASK_TOKENS = 63


@njit(cache=True)
def system_statistics_masks(x, m, density_threshold, link_threshold, doubled, forward, label):
    """``pair_statistics`` of system m on the circle for n <= 63 tokens, with the links as
    bit masks; returns (close pairs, clusters).

    Each unordered pair is met once, as (i, i + s) for s = 1..n // 2 with the tokens doubled
    to 2n columns (``doubled``, 4 n scratch): per token i one loop over s, vectorised, with
    no stores (the counts and the link mask stay in registers). The Gram entry is computed
    by the same operations as in the depth-first search (and <x_i, x_j> = <x_j, x_i>
    exactly), so both give the same numbers. The link of (i, i + s) sets bit s of
    forward[i] (n int64 scratch), turned into bit (i + s) mod n afterwards; a cluster grows
    by its tokens' forward masks and by the tokens whose forward masks meet it, until it
    stops growing (isolated tokens skip the growing). Compiled on its own (not inlined), so
    that a fused caller with other fastmath flags runs the very same arithmetic.
    """
    n = x.shape[2]
    half = n // 2
    for j in range(n):
        doubled[j] = doubled[j + n] = x[m, 0, j]
        doubled[2 * n + j] = doubled[3 * n + j] = x[m, 1, j]
    count = 0
    for i in range(n):
        x0 = doubled[i]
        x1 = doubled[2 * n + i]
        pairs = 0
        links = 0
        for s in range(1, half + 1):
            g = 0.0 + x0 * doubled[i + s] + x1 * doubled[2 * n + i + s]
            # Two ordered pairs, except at s = n / 2, met once from either end.
            pairs += (1 + (2 * s != n)) * (g > density_threshold)
            links |= (g > link_threshold) * (1 << s)
        count += pairs
        forward[i] = links
    everyone = (1 << n) - 1
    targets = 0
    for i in range(n):
        r = forward[i]
        forward[i] = ((r << i) | (r >> (n - i))) & everyone
        targets |= forward[i]
    unassigned = everyone
    k = 0
    for seed in range(n):
        if not (unassigned >> seed) & 1:
            continue
        cluster = 1 << seed
        if forward[seed] == 0 and not targets & cluster:
            # An isolated token, the common case before clustering: no scans needed.
            label[seed] = k
            unassigned &= ~cluster
            k += 1
            continue
        while True:
            grown = cluster
            for j in range(n):
                grown |= forward[j] * ((cluster >> j) & 1)
                grown |= ((forward[j] & cluster) != 0) << j
            if grown == cluster:
                break
            cluster = grown
        for j in range(n):
            if (cluster >> j) & 1:
                label[j] = k
        unassigned &= ~cluster
        k += 1
    return count, k


@njit(cache=True, parallel=True)
def _pair_statistics_masks(x, density_threshold, link_threshold, rows, masks, close_pairs, labels, n_clusters):
    """``pair_statistics`` on the circle for n <= 63 tokens (see ``system_statistics_masks``)."""
    for m in prange(x.shape[0]):
        close_pairs[m], n_clusters[m] = system_statistics_masks(
            x, m, density_threshold, link_threshold, rows[m], masks[m], labels[m]
        )


def scratch(M, n):
    """The (rows, stacks) scratch of ``pair_statistics``: (M, 4 n) float64 (doubled
    coordinates of the circle kernel, or one Gram row) and (M, n) int64."""
    return np.empty((M, 4 * n)), np.empty((M, n), np.int64)


def pair_statistics(x, *args):
    """See ``_DOC``; dispatches on the padded dimension of x (2, or a multiple of 4)."""
    if x.shape[1] == 2:
        kernel = _pair_statistics_masks if x.shape[2] <= MAX_MASK_TOKENS else _pair_statistics2
        return kernel(x, *args)
    if x.shape[1] % 4:
        raise ValueError(f"x must be padded to 2 or a multiple of 4 coordinates, got {x.shape[1]}")
    return _pair_statistics4(x, *args)
