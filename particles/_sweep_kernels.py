"""The phase diagram's fused kernel: for each system, all its Euler steps and its clustering
statistics at every checkpoint, in one parallel launch per beta.

A launch per step and per checkpoint (hundreds per beta) waits each time for every thread
to be scheduled; on a shared machine those waits dominate. Here each system is one task,
handed out by an atomic queue (``_task_queue``): a thread takes the next system as soon as
it is free, so a thread the OS runs late delays nothing but its own current system. Each
task writes only its system's outputs, and runs the very functions of the stepwise path
(``euler_symmetric_system``, ``euler_system*``, ``system_statistics*``), so the numbers are bit for bit those
of the stepwise path, whatever the number of threads.
"""

from numba import njit, prange

from ._kernels import euler_symmetric_system, euler_system2, euler_system4
from ._observable_kernels import MAX_MASK_TOKENS, system_statistics2, system_statistics4, system_statistics_masks
from ._task_queue import next_task


@njit(cache=True, parallel=True)
def euler_statistics_symmetric(
    x,
    BA,
    V,
    shift,
    usa,
    h,
    stretches,
    density_threshold,
    link_threshold,
    work,
    rows,
    masks,
    labels,
    queue,
    close,
    clusters,
    completed,
):
    """Euler steps on the circle (symmetric BA) with the clustering statistics of each
    checkpoint, one system per task.

    Args:
        x: (B, 2, n) states, advanced in place to the last checkpoint.
        BA, V, shift, usa, h: as for ``_kernels.euler_symmetric``.
        stretches: (C,) int64, the steps before checkpoint c (from the previous one).
        density_threshold, link_threshold: as for ``_observable_kernels.pair_statistics``.
        work: (W, 12, 2 n) float scratch, one slab per worker; W workers share the tasks.
        rows: (W, 4 n) float64, masks and labels: (W, n) int64, scratch of the statistics.
        queue: (1,) int64, 0 at the call (the task counter).
        close, clusters: (C, B) int64 out, the close ordered pairs and the clusters of each
            checkpoint and system (left as they were from a system's first non-finite
            state on).
        completed: (B,) int64 out, the steps each system completed with a finite state.
    """
    B, _, n = x.shape
    for worker in prange(work.shape[0]):
        while True:
            b = next_task(queue)
            if b >= B:
                break
            done = 0
            for c in range(len(stretches)):
                steps = euler_symmetric_system(x, b, BA, V, shift, usa, h, stretches[c], work[worker])
                done += steps
                if steps < stretches[c]:
                    break
                if n <= MAX_MASK_TOKENS:
                    close[c, b], clusters[c, b] = system_statistics_masks(
                        x, b, density_threshold, link_threshold, rows[worker], masks[worker], labels[worker]
                    )
                else:
                    close[c, b], clusters[c, b] = system_statistics2(
                        x, b, density_threshold, link_threshold, rows[worker], masks[worker], labels[worker]
                    )
            completed[b] = done


def _make_euler_statistics(G):
    """``euler_statistics_symmetric`` for the other fused fields, states padded to a
    multiple of G coordinates (any interaction, row maxima or shift)."""

    def euler_statistics(
        x, BA, V, shift, usa, row_max, h, stretches, density_threshold, link_threshold, chunk, ax, vx, v, norms,
        weights, rows, masks, labels, queue, close, clusters, completed,
    ):  # fmt: skip
        B, _, n = x.shape
        for worker in prange(weights.shape[0]):
            while True:
                b = next_task(queue)
                if b >= B:
                    break
                done = 0
                for c in range(len(stretches)):
                    if G == 2:
                        steps = euler_system2(
                            x, b, BA, V, shift, usa, row_max, h, stretches[c], chunk, ax, vx, v, weights[worker], norms
                        )
                    else:
                        steps = euler_system4(
                            x, b, BA, V, shift, usa, row_max, h, stretches[c], chunk, ax, vx, v, weights[worker], norms
                        )
                    done += steps
                    if steps < stretches[c]:
                        break
                    if G == 2 and n <= MAX_MASK_TOKENS:
                        close[c, b], clusters[c, b] = system_statistics_masks(
                            x, b, density_threshold, link_threshold, rows[worker], masks[worker], labels[worker]
                        )
                    elif G == 2:
                        close[c, b], clusters[c, b] = system_statistics2(
                            x, b, density_threshold, link_threshold, rows[worker], masks[worker], labels[worker]
                        )
                    else:
                        close[c, b], clusters[c, b] = system_statistics4(
                            x, b, density_threshold, link_threshold, rows[worker], masks[worker], labels[worker]
                        )
                completed[b] = done

    euler_statistics.__doc__ = _DOC.format(G=G)
    euler_statistics.__qualname__ = euler_statistics.__name__ = f"euler_statistics{G}"
    return njit(cache=True, parallel=True)(euler_statistics)


_DOC = """Euler steps (states padded to a multiple of {G} coordinates) with the clustering
    statistics of each checkpoint, one system per task.

    Args:
        x: (B, d, n) states, advanced in place to the last checkpoint.
        BA, V, shift, usa, row_max, chunk: as for ``_kernels.interact{G}``.
        h, stretches, density_threshold, link_threshold: as for ``euler_statistics_symmetric``.
        ax, vx, v: (B, d, n) and norms: (B, n) scratch of the steps.
        weights: (W, chunk, n) scratch, one slab per worker; W workers share the tasks.
        rows, masks, labels, queue, close, clusters, completed: as for
            ``euler_statistics_symmetric``.
    """
euler_statistics2 = _make_euler_statistics(2)
euler_statistics4 = _make_euler_statistics(4)
