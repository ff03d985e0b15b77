"""Numba kernels of the clustering observables, on states in the coordinate-major layout
(M, dp, n) of ``_kernels`` (dp = 2 or a multiple of 4, zero-padded) so that loops over
tokens j have unit stride."""
import numpy as np
from numba import njit, prange


def _make_pair_statistics(G):
    """``pair_statistics`` for states padded to a multiple of G coordinates (G = 2 or 4):
    the first G coordinates of a Gram row, the count and the link test share one loop over j
    with G fixed at compile time, so it vectorises. The closure holds only the integer G,
    which keeps Numba's cache valid across processes."""

    def pair_statistics(x, density_threshold, link_threshold, rows, stacks, close_pairs, labels,
                        n_clusters):
        M, d, n = x.shape
        for m in prange(M):
            row, stack, label = rows[m], stacks[m], labels[m]
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
            close_pairs[m] = count
            n_clusters[m] = k

    pair_statistics.__doc__ = _DOC
    pair_statistics.__qualname__ = pair_statistics.__name__ = f"pair_statistics{G}"
    return njit(cache=True, parallel=True)(pair_statistics)


_DOC = """Per system m: the ordered pairs i != j with <x_i, x_j> > density_threshold, and the
    single-linkage clusters of the graph <x_i, x_j> > link_threshold.

    Depth-first search: every token is expanded exactly once, so each Gram row is computed
    once (vectorised) and serves both the pair count and the links.

    Args:
        x: (M, dp, n) states.
        rows: (M, n) float64 scratch; stacks: (M, n) int64 scratch.
        close_pairs: (M,) int64 out, the pair counts.
        labels: (M, n) int64 out, cluster labels numbered 0, 1, ... in order of first token.
        n_clusters: (M,) int64 out.
    """
_pair_statistics2 = _make_pair_statistics(2)
_pair_statistics4 = _make_pair_statistics(4)


# Largest total pseudo-angle (see _circle_statistics) over a circle.
_PSEUDO_TURN = 4.0


@njit(cache=True, parallel=True)
def _circle_statistics(x, density_threshold, link_threshold, keys, orders, close_pairs, labels,
                       n_clusters):
    """``pair_statistics`` on the circle (d = 2), in O(n log n) from the tokens sorted by angle.

    Valid when n arccos(density_threshold) < 4 and link_threshold > -1 (checked by
    ``pair_statistics``). Cut the circle at the largest step of the pseudo-angle:
    that step is at least 4 / n, and the pseudo-angle never grows faster than the angle, so
    no close pair (angle below arccos(density_threshold)) crosses the cut. Along the cut
    circle the close partners of a token are the tokens just after it up to the first one
    that is not close, and that end only moves forward from token to token (two pointers).
    Single-linkage clusters are the runs between consecutive tokens that are not linked,
    around the circle (one such gap or none: a single cluster). Inner products are formed
    as in ``pair_statistics2``, so both give the same counts and labels.
    """
    M, _, n = x.shape
    for m in prange(M):
        key, order, label = keys[m], orders[m], labels[m]
        c, s = x[m, 0], x[m, 1]
        for i in range(n):
            # A pseudo-angle, increasing with the angle on [-pi/2, 3pi/2): no atan2 needed.
            p = s[i] / (abs(c[i]) + abs(s[i]))
            key[i] = p if c[i] >= 0.0 else 2.0 - p
        if n <= 64:
            # Insertion sort: no allocation, and fast for the usual n = 32.
            for i in range(n):
                order[i] = i
            for i in range(1, n):
                j, o = i, order[i]
                while j > 0 and key[order[j - 1]] > key[o]:
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = o
        else:
            order[:] = np.argsort(key, kind="mergesort")
        cut, widest = 0, key[order[0]] + _PSEUDO_TURN - key[order[n - 1]]
        for r in range(1, n):
            step = key[order[r]] - key[order[r - 1]]
            if step > widest:
                cut, widest = r, step
        count = 0
        end = 0
        for r in range(n):
            i = order[(cut + r) % n]
            end = max(end, r)
            while end + 1 < n:
                j = order[(cut + end + 1) % n]
                if c[i] * c[j] + s[i] * s[j] <= density_threshold:
                    break
                end += 1
            count += 2 * (end - r)
        gaps = 0
        for r in range(n):
            i = order[r]
            # Provisionally, a token's cluster is the number of gaps before it.
            label[i] = gaps
            j = order[(r + 1) % n]
            gaps += c[i] * c[j] + s[i] * s[j] <= link_threshold
        # The run after the last gap continues into the run before the first one.
        k = max(gaps, 1)
        for i in range(n):
            label[i] %= k
        _renumber_by_first_token(label, order, k)
        close_pairs[m] = count
        n_clusters[m] = k


@njit(inline="always")
def _renumber_by_first_token(label, scratch, k):
    """Relabel clusters 0, 1, ... in the order of their first token, as the search does."""
    for c in range(k):
        scratch[c] = -1
    next_label = 0
    for i in range(label.shape[0]):
        if scratch[label[i]] < 0:
            scratch[label[i]] = next_label
            next_label += 1
        label[i] = scratch[label[i]]


def pair_statistics(x, density_threshold, link_threshold, *args):
    """See ``_DOC``; dispatches on the padded dimension of x (2, or a multiple of 4)."""
    n = x.shape[2]
    if x.shape[1] == 2 and -1.0 < density_threshold and link_threshold > -1.0 and (
            n * np.arccos(min(density_threshold, 1.0)) < 0.99 * _PSEUDO_TURN):
        return _circle_statistics(x, density_threshold, link_threshold, *args)
    if x.shape[1] == 2:
        return _pair_statistics2(x, density_threshold, link_threshold, *args)
    if x.shape[1] % 4:
        raise ValueError(f"x must be padded to 2 or a multiple of 4 coordinates, got {x.shape[1]}")
    return _pair_statistics4(x, density_threshold, link_threshold, *args)
