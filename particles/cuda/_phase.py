"""The phase diagram on the GPU: every system of every beta is one thread block that runs
all its Euler steps with its tokens in shared memory and computes the clustering statistics
at each checkpoint on the device; only per-checkpoint counts come back to the host."""

from functools import lru_cache

import numpy as np
from numba import cuda, int32

from . import _small
from . import _token_ops as ops

# Cluster labels live in static shared memory, one int32 per token.
MAX_TOKENS = 1024


@cuda.jit(device=True)
def _gram(y, i, j, n, d):
    g = 0.0
    for k in range(d):
        g += y[k * n + i] * y[k * n + j]
    return g


@cuda.jit(device=True)
def pair_statistics(y, n, d, density_threshold, link_threshold, label, counters):
    """counters[0] <- ordered pairs i != j with <y_i, y_j> > density_threshold, counters[1]
    <- single-linkage clusters of the graph <y_i, y_j> > link_threshold (as
    ``_observable_kernels.pair_statistics``). Every thread of the block must call it.

    Clusters by minimum-label propagation: each token takes the smallest label among its
    linked tokens until no label changes; a cluster is then labelled by its smallest token.
    """
    first, stride = cuda.threadIdx.x, cuda.blockDim.x
    cuda.syncthreads()
    if first == 0:
        counters[0] = 0
        counters[1] = 0
    for i in range(first, n, stride):
        label[i] = i
    cuda.syncthreads()
    close = 0
    for i in range(first, n, stride):
        for j in range(n):
            if j != i and _gram(y, i, j, n, d) > density_threshold:
                close += 1
    cuda.atomic.add(counters, 0, close)
    while True:
        cuda.syncthreads()
        if first == 0:
            counters[2] = 0
        cuda.syncthreads()
        for i in range(first, n, stride):
            best = label[i]
            for j in range(n):
                if label[j] < best and _gram(y, i, j, n, d) > link_threshold:
                    best = label[j]
            if best < label[i]:
                label[i] = best
                counters[2] = 1
        cuda.syncthreads()
        if counters[2] == 0:
            break
    roots = 0
    for i in range(first, n, stride):
        roots += label[i] == i
    cuda.atomic.add(counters, 1, roots)
    cuda.syncthreads()


@lru_cache(maxsize=None)
def kernel(dtype):
    shared_type = {np.dtype(np.float64): cuda.types.float64, np.dtype(np.float32): cuda.types.float32}[np.dtype(dtype)]

    @cuda.jit(cache=True)
    def euler_statistics(
        x,
        BA,
        V,
        usa,
        h,
        batch,
        checkpoint_steps,
        s0,
        s1,
        record_start,
        density_threshold,
        link_threshold,
        close_counts,
        cluster_counts,
        final_close,
        failed_at,
    ):
        """Euler steps s0 -> min(s1, last checkpoint) of system blockIdx.x, statistics at
        its checkpoints.

        x: (K batch, n, d) states of K betas, advanced in place; BA, V: (K batch, d, d) or
        (1, d, d); h: (K,) step per beta; checkpoint_steps: (K, C); record_start: also
        record the checkpoints at step s0. close_counts: (K, C) int64, summed over systems;
        cluster_counts: (K, C, n + 1) int64, systems per cluster count; final_close:
        (K batch,) int64, pairs at the last checkpoint; failed_at: (K batch,) int64, the
        first step whose state is not finite (left as is while all are finite).
        """
        g = cuda.blockIdx.x
        beta_index = g // batch
        n, d = x.shape[1], x.shape[2]
        dn = d * n
        shared = cuda.shared.array(0, shared_type)
        y, ax, vx, v = shared[:dn], shared[dn : 2 * dn], shared[2 * dn : 3 * dn], shared[3 * dn : 4 * dn]
        label = cuda.shared.array(MAX_TOKENS, int32)
        counters = cuda.shared.array(4, int32)
        A = BA[g if BA.shape[0] > 1 else 0]
        W = V[g if V.shape[0] > 1 else 0]
        steps = checkpoint_steps[beta_index]
        C = steps.shape[0]
        step_size = h[beta_index]
        ops.load_state(x, g, y, n, d)
        if cuda.threadIdx.x == 0:
            counters[3] = 0
        ptr = 0
        # Checkpoints before this window, and at its first step when an earlier window recorded it.
        while ptr < C and (steps[ptr] < s0 or (steps[ptr] == s0 and not record_start)):
            ptr += 1
        end = min(s1, steps[C - 1])
        for s in range(s0, end + 1):
            if s > s0:
                if not ops.euler_step(A, W, y, ax, vx, v, step_size, n, d, usa):
                    counters[3] = 1
                cuda.syncthreads()
                if counters[3] != 0:
                    if cuda.threadIdx.x == 0 and failed_at[g] < 0:
                        failed_at[g] = s
                    break
            elif not record_start:
                continue
            if ptr < C and steps[ptr] == s:
                pair_statistics(y, n, d, density_threshold, link_threshold, label, counters)
                while ptr < C and steps[ptr] == s:
                    if cuda.threadIdx.x == 0:
                        cuda.atomic.add(close_counts, (beta_index, ptr), counters[0])
                        cuda.atomic.add(cluster_counts, (beta_index, ptr, counters[1]), 1)
                        if ptr == C - 1:
                            final_close[g] = counters[0]
                    ptr += 1
        ops.store_state(y, x, g, n, d)

    return euler_statistics


def fits(n, d):
    """True when a float64 system of n tokens in d dimensions fits one block with its labels."""
    shared = _small.REGIONS["euler"] * n * d * 8 + 4 * MAX_TOKENS + _small.STATIC_BYTES
    return n <= MAX_TOKENS and shared <= _small.SHARED_BYTES


def clustering_statistics(betas, ensemble, draws):
    """The rows of ``beta_statistics`` for every beta, computed on the GPU.

    Args:
        betas: inverse temperatures.
        ensemble: the ``ClusteringEnsemble``.
        draws: draws(beta) -> (x0 (batch, n, d), draw_matrices), the starts and the draw of
            ``DrawnMatrices`` (Q = I, K, V) of the CPU path, so that both see the same numbers.

    Returns:
        one dict per beta with "density" (C,), "clusters" (C,) and "final_density" (batch,).

    Raises:
        ValueError: a system does not fit one thread block.
        RuntimeError: a state became non-finite (beta, time and step in the message).
    """
    n, d = ensemble.n, ensemble.d
    if not fits(n, d):
        raise ValueError(
            f"device='cuda' phase diagrams keep a system in one thread block: n <= {MAX_TOKENS} and "
            f"32 n d + {4 * MAX_TOKENS + _small.STATIC_BYTES} <= {_small.SHARED_BYTES} bytes of shared memory, "
            f"got n = {n}, d = {d}; use device='cpu'"
        )
    # Without redraws all betas run in one launch; redraws change (A, V) at steps that
    # differ between betas, so then each beta runs alone, one launch per redraw window.
    groups = [list(betas)] if ensemble.regen_period is None else [[beta] for beta in betas]
    rows = []
    for group in groups:
        rows.extend(_group_statistics(group, ensemble, draws))
    return rows


def _group_statistics(betas, ensemble, draws):
    n, d, batch = ensemble.n, ensemble.d, ensemble.batch
    K = len(betas)
    starts, drawers, steps, hs = [], [], [], []
    for beta in betas:
        x0, draw_matrices = draws(beta)
        h = ensemble.step_size(beta)
        starts.append(x0)
        drawers.append(draw_matrices)
        hs.append(h)
        steps.append(ensemble.checkpoint_steps(beta))
    steps = np.stack(steps)
    C = steps.shape[1]
    last = int(steps[:, -1].max())
    windows = [0, last]
    if ensemble.regen_period is not None:
        every = max(1, round(ensemble.regen_period / hs[0]))
        windows = [0] + list(range(every, last, every)) + [last]
    x = cuda.to_device(np.ascontiguousarray(np.concatenate(starts)))
    close = cuda.to_device(np.zeros((K, C), np.int64))
    clusters = cuda.to_device(np.zeros((K, C, n + 1), np.int64))
    final_close = cuda.to_device(np.zeros(K * batch, np.int64))
    failed_at = cuda.to_device(np.full(K * batch, -1, np.int64))
    h = cuda.to_device(np.array(hs))
    steps_device = cuda.to_device(steps)
    threads, shared_bytes = _small.launch_shape(n, d, np.float64, "euler")
    euler_statistics = kernel(np.dtype(np.float64))
    for w, (s0, s1) in enumerate(zip(windows[:-1], windows[1:])):
        matrices = [draw() for draw in drawers]
        # Q is the identity in a draw (ensembles.DrawnMatrices): A = Q^T K = K.
        BA = np.concatenate([_per_system(beta * m.K, batch, d) for beta, m in zip(betas, matrices)])
        V = np.concatenate([_per_system(m.V, batch, d) for m in matrices])
        euler_statistics[K * batch, threads, 0, shared_bytes](
            x,
            cuda.to_device(BA),
            cuda.to_device(V),
            ensemble.dynamics == "USA",
            h,
            batch,
            steps_device,
            s0,
            s1,
            w == 0,
            ensemble.density_threshold,
            1.0 - ensemble.cluster_tol,
            close,
            clusters,
            final_close,
            failed_at,
        )
    failed = failed_at.copy_to_host()
    if (failed >= 0).any():
        system = int(np.argmax(failed >= 0))
        k = system // batch
        step = int(failed[system])
        raise RuntimeError(
            f"the state became non-finite at t = {step * hs[k]:g} (step {step}) with beta = {betas[k]:g}, "
            f"dynamics {ensemble.dynamics!r}, dtype float64, method 'euler', dt = {hs[k]:g}"
            + (" (USA weights e^{beta <Q x_i, K x_j>} are not normalised and overflow at large beta)")
            * (ensemble.dynamics == "USA")
            + "; try a smaller dt or a lower beta"
        )
    pairs = n * (n - 1)
    close, clusters, final_close = close.copy_to_host(), clusters.copy_to_host(), final_close.copy_to_host()
    return [
        {
            "density": close[k] / (batch * pairs),
            "clusters": median_of_counts(clusters[k]),
            "final_density": final_close[k * batch : (k + 1) * batch] / pairs,
        }
        for k in range(K)
    ]


def _per_system(M, batch, d):
    """(d, d) or (batch, d, d) -> (batch, d, d) float64."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(M, np.float64), (batch, d, d)))


def median_of_counts(counts):
    """(C,) medians of the integers whose histograms are the rows of ``counts`` (C, m), as
    ``np.median`` of the integers themselves (the mean of the two middle ones for an even
    number)."""
    total = int(counts[0].sum())
    cumulative = np.cumsum(counts, axis=1)
    lower = np.argmax(cumulative > (total - 1) // 2, axis=1)
    upper = np.argmax(cumulative > total // 2, axis=1)
    return (lower + upper) / 2.0
