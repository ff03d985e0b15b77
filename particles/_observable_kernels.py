"""Numba kernels of the clustering observables, on states in the coordinate-major layout
(M, d, n) of ``_kernels`` so that loops over tokens j have unit stride."""
from numba import njit, prange


@njit(cache=True, parallel=True)
def pair_statistics(x, density_threshold, link_threshold, rows, stacks, close_pairs, labels,
                    n_clusters):
    """Per system m: the ordered pairs i != j with <x_i, x_j> > density_threshold, and the
    single-linkage clusters of the graph <x_i, x_j> > link_threshold.

    Depth-first search: every token is expanded exactly once, so each Gram row is computed
    once (vectorised) and serves both the pair count and the links.

    Args:
        x: (M, d, n) states.
        rows: (M, n) float64 scratch; stacks: (M, n) int64 scratch.
        close_pairs: (M,) int64 out, the pair counts.
        labels: (M, n) int64 out, cluster labels numbered 0, 1, ... in order of first token.
        n_clusters: (M,) int64 out.
    """
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
                xk = x[m, 0, u]
                for j in range(n):
                    row[j] = xk * x[m, 0, j]
                for c in range(1, d):
                    xk = x[m, c, u]
                    for j in range(n):
                        row[j] += xk * x[m, c, j]
                for j in range(n):
                    count += row[j] > density_threshold
                count -= row[u] > density_threshold
                # Most rows link no new token: a branch-free (vectorised) test first.
                new_links = 0
                for j in range(n):
                    new_links += (label[j] < 0) & (row[j] > link_threshold)
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
