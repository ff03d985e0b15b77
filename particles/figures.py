"""Figures of sweep results (matplotlib is imported here only, when a figure is drawn)."""

import numpy as np

__all__ = ["plot_phase_diagram"]


def plot_phase_diagram(result, path):
    """Draw a ``PhaseDiagram`` as in Geshkovski et al. (2023): colour over (t, beta).

    Three panels: the density of close pairs on linear and logarithmic colour scales, and the
    median number of clusters.

    Args:
        result: a ``PhaseDiagram`` (for instance from ``load_phase_diagram``).
        path: output PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    c = result.config
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), constrained_layout=True)
    panels = [
        (result.density, None, "density of pairs with <x_i, x_j> > %g" % c.density_threshold),
        (np.maximum(result.density, 1e-4), LogNorm(vmin=1e-3, vmax=1), "same, log colour scale"),
        (result.clusters, LogNorm(vmin=1, vmax=c.n), "median number of clusters"),
    ]
    for ax, (values, norm, title) in zip(axes, panels):
        mesh = ax.pcolormesh(
            result.ts,
            result.betas,
            values,
            shading="nearest",
            cmap="magma",
            norm=norm,
            vmin=None if norm else 0,
            vmax=None if norm else 1,
            rasterized=True,
        )
        fig.colorbar(mesh, ax=ax)
        ax.set_xlabel("t")
        ax.set_ylabel(r"$\beta$")
        ax.set_title(title, fontsize=10)
    fig.suptitle(
        f"{c.dynamics}, d = {c.d}, n = {c.n}, {c.batch} systems per beta, "
        f"B: {c.interaction}, V: {c.value}, dt = {c.dt:g}"
    )
    fig.savefig(path, dpi=120)
    plt.close(fig)
