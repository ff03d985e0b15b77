"""Numba kernels of the clustering observables, on states in the coordinate-major layout
(M, dp, n) of ``_kernels`` (dp = 2 or a multiple of 4, zero-padded) so that loops over
tokens j have unit stride."""
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


def pair_statistics(x, *args):
    """See ``_DOC``; dispatches on the padded dimension of x (2, or a multiple of 4)."""
    if x.shape[1] == 2:
        return _pair_statistics2(x, *args)
    if x.shape[1] % 4:
        raise ValueError(f"x must be padded to 2 or a multiple of 4 coordinates, got {x.shape[1]}")
    return _pair_statistics4(x, *args)
