"""Figures of sweep results (matplotlib is imported here only, when a figure is drawn)."""

import numpy as np

__all__ = ["plot_metastability"]


def plot_metastability(path, config, out):
    """Staircases and plateau growth from a metastability results file.

    Left: median cluster count over systems against log t, one curve per beta. Right: the
    duration of each system's longest plateau with >= 2 clusters against beta (log scale),
    with the fitted slope of log(duration) on beta (the theory bounds it below by 1 - alpha;
    plateaus still running at t_max are censored there).

    Args:
        path: HDF5 file written by ``simulations.metastability``.
        config: its config dict (checked against the stored one).
        out: output PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import ResultStore
    from .metastability import find_plateaus

    store = ResultStore(path, config=config)
    entries = [store.load(key) for key in sorted(store.keys())]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    betas, durations = [], []
    for entry in entries:
        ts, counts, beta = entry["ts"], entry["counts"], float(entry["beta"])
        left.step(ts, np.median(counts, axis=1), where="post", label=f"beta = {beta:g}")
        for c in counts.T:
            plateaus = [p for p in find_plateaus(ts, c) if p.clusters >= 2]
            if plateaus:
                longest = max(plateaus, key=lambda p: p.end - p.start)
                betas.append(beta)
                durations.append(longest.end - longest.start)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("t")
    left.set_ylabel("median number of clusters")
    left.legend(fontsize=8)
    betas, durations = np.array(betas), np.array(durations)
    right.semilogy(betas, durations, "o", alpha=0.5)
    if len(np.unique(betas)) >= 2:
        slope, intercept = np.polyfit(betas, np.log(durations), 1)
        grid = np.linspace(betas.min(), betas.max(), 50)
        right.semilogy(
            grid,
            np.exp(intercept + slope * grid),
            "k--",
            label=f"fit: log duration = {slope:.2f} beta + {intercept:.1f}",
        )
        right.legend(fontsize=8)
    right.set_xlabel(r"$\beta$")
    right.set_ylabel("duration of the longest plateau with >= 2 clusters")
    fig.savefig(out, dpi=120)
    plt.close(fig)
