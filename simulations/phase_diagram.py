"""The (t, beta) phase diagram of clustering (Geshkovski et al., 2023).

Quick default: d = 2, n = 32, SA, 45 betas in [0.1, 9], 512 systems per beta, t_max = 30,
dt = 0.1, 100 checkpoints. ``--full`` gives the authors' defaults: 90 betas, 2048
systems, 200 checkpoints (about 8 times the work). The progress bar counts the time steps of
all betas: with ``--dynamics USA --usa-step-correction`` the step shrinks like
e^(-beta), and the large betas hold nearly all the steps.

Results go to an HDF5 file named by a digest of the configuration (a rerun skips the betas
already finished); the figure is drawn from that file, next to it. One task per beta, here
or on a Dask cluster (``--scheduler``), with identical numbers.

    python -m simulations.phase_diagram [--full] [--dynamics USA --t-max 1] [--out DIR]
"""

import dataclasses

import numpy as np
from matplotlib.colors import LogNorm
from tqdm.auto import tqdm

from particles import ClusteringEnsemble, PhaseDiagramStore, beta_statistics, ensembles
from simulations.common.cli import (
    FullDefault,
    config_or_exit,
    integer,
    real,
    refuse_existing,
    set_threads,
    study_parser,
)
from simulations.common.figures import count_colours, figure_path, finish, panels
from simulations.common.naming import result_path


def _quick_betas():
    return tuple(np.linspace(0.1, 9.0, 45))


@dataclasses.dataclass(frozen=True, kw_only=True)
class PhaseDiagramConfig:
    """A phase-diagram sweep: the betas and the ensemble simulated at each (quick defaults).

    Attributes:
        betas: inverse temperatures, >= 0.
        ensemble: the ``particles.ClusteringEnsemble`` of every beta.
    """

    betas: tuple = dataclasses.field(default_factory=_quick_betas)
    ensemble: ClusteringEnsemble = dataclasses.field(
        default_factory=lambda: ClusteringEnsemble(batch=512, checkpoints=100)
    )

    def __post_init__(self):
        object.__setattr__(self, "betas", ClusteringEnsemble.check_betas(self.betas))
        if not isinstance(self.ensemble, ClusteringEnsemble):
            raise TypeError(f"ensemble must be a particles.ClusteringEnsemble, got {type(self.ensemble).__name__}")

    def as_dict(self):
        """The flat config stored with the results (and digested into the file name)."""
        return {"betas": np.asarray(self.betas), **self.ensemble.as_dict()}

    @classmethod
    def from_dict(cls, values):
        return cls(betas=tuple(np.atleast_1d(values["betas"])), ensemble=ClusteringEnsemble.from_dict(values))


def run(config, path, *, progress=True, scheduler=None):
    """Compute the sweep into ``path``, saving each beta as it finishes; a rerun with the
    same config skips the betas already saved.

    Args:
        config: the ``PhaseDiagramConfig``.
        path: the HDF5 file (``particles.PhaseDiagramStore``; ``particles.load`` reads it).
        progress: show a progress bar counting the time steps of all betas (on a cluster
            it moves when a beta finishes).
        scheduler: None (this process), a Dask ``distributed.Client`` or the address of a
            Dask scheduler ("tcp://host:port"): one task per beta, identical results.

    Returns:
        the ``particles.PhaseDiagram`` read back from ``path``.
    """
    store = PhaseDiagramStore(path, config.betas, config.ensemble)
    todo = store.todo()
    config.ensemble.check_steps([config.betas[k] for k in todo])
    steps = [config.ensemble.num_steps(beta) for beta in config.betas]
    bar = tqdm(
        total=sum(steps),
        initial=sum(steps) - sum(steps[k] for k in todo),
        disable=not progress,
        unit="step",
        unit_scale=True,
        desc=f"phase diagram, {len(todo)} of {len(steps)} betas to go",
    )
    with bar:
        for k, stats in _compute(config, todo, scheduler, bar.update):
            store.save(k, stats)
            if scheduler is not None:
                bar.update(steps[k])
    return load(path)


def _compute(config, todo, scheduler, on_steps):
    """Yield (k, statistics) as betas finish, here (reporting steps) or on a Dask cluster."""
    if scheduler is None:
        for k in todo:
            yield k, beta_statistics(config.betas[k], config.ensemble, on_steps=on_steps)
        return
    # Imported only for a cluster run: distributed is an optional dependency.
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = {client.submit(beta_statistics, config.betas[k], config.ensemble, pure=False): k for k in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        if client is not scheduler:
            client.close()


def load(path):
    """The ``particles.PhaseDiagram`` of a finished sweep, read from its file alone (as
    ``particles.load(path)``).

    Raises:
        ValueError: not all betas are finished (rerun the sweep).
    """
    return PhaseDiagramStore(path).load()


def plot(path, *, fig=None, ax=None, save=True):
    """Draw the sweep in ``path`` as in Geshkovski et al. (2023): colour over (t, beta), the
    density of close pairs on linear and logarithmic colour scales and the median number
    of clusters (one colour per count).

    Args:
        path: the sweep's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the three panels into; None for a new one.
        ax: three axes to draw on instead.
        save: True for the PNG beside ``path``, False for no file, or a path.

    Returns:
        the ``Figure``.
    """
    result = load(path)
    c = result.ensemble
    fig, axes = panels(1, 3, size=(16, 4.6), fig=fig, ax=ax)
    floor = 1e-3
    density_kw = dict(shading="nearest", cmap="magma", rasterized=True)
    mesh = axes[0].pcolormesh(result.ts, result.betas, result.density, vmin=0, vmax=1, **density_kw)
    fig.colorbar(mesh, ax=axes[0])
    axes[0].set_title("density of pairs with <x_i, x_j> > %g" % c.density_threshold, fontsize=10)
    # The log scale cannot show 0: values below the floor are drawn in the floor's colour, and the
    # colour bar's triangle and the title say so.
    mesh = axes[1].pcolormesh(
        result.ts, result.betas, np.maximum(result.density, floor), norm=LogNorm(vmin=floor, vmax=1), **density_kw
    )
    fig.colorbar(mesh, ax=axes[1], extend="min")
    axes[1].set_title(f"same, log colour scale (values < {floor:g} shown as {floor:g})", fontsize=10)
    cmap, norm, ticks, labels = count_colours(max(np.nanmax(result.clusters), 2))
    mesh = axes[2].pcolormesh(result.ts, result.betas, result.clusters, shading="nearest", cmap=cmap, norm=norm)
    bar = fig.colorbar(mesh, ax=axes[2], ticks=ticks)
    bar.set_ticklabels(labels)
    bar.minorticks_off()
    axes[2].set_title("median number of clusters", fontsize=10)
    for a in axes:
        a.set_xlabel("t")
        a.set_ylabel(r"$\beta$")
    fig.suptitle(_title(c), fontsize=10)
    return finish(fig, save, figure_path(path))


def _title(c):
    """Every setting that changes the picture: dynamics, sizes, ensemble, step and its correction, redraws."""
    step = f"dt = {c.dt:g}"
    if c.dynamics == "USA" and c.usa_step_correction:
        step += r" / max($\sqrt{\beta}\, e^{\beta - 1/2}$, 1) (USA step correction)"
    random = c.interaction != "identity" or c.value != "identity"
    redraw = "" if c.regen_period is None else f", redrawn every t = {c.regen_period:g}"
    ensemble = f"; one draw per {c.draw}{redraw}" if random else ""
    return (
        f"{c.dynamics}, d = {c.d}, n = {c.n}, {c.batch} systems per beta, t_max = {c.t_max:g}, {step}\n"
        f"B = Q^T K: {c.interaction}, V: {c.value}{ensemble}; cluster tolerance {c.cluster_tol:g}, seed {c.seed}"
    )


#: Time measured on the 2-core development machine (one core's worth; README commands).
TIMING = (
    "quick default ~20 s; --full ~8x that; "
    "--dynamics USA --t-max 1 --usa-step-correction ~15-20 min (56x the quick default's steps)"
)


def build_parser():
    p = study_parser(
        "phase_diagram",
        __doc__,
        seed=0,
        seed_help="seed of the starts and of the random (B, V)",
        timing=TIMING,
    )
    p.add_argument(
        "--betas",
        type=real(0.0),
        nargs=3,
        metavar=("START", "STOP", "NUM"),
        default=FullDefault((0.1, 9.0, 45), (0.1, 9.0, 90)),
        help="np.linspace(START, STOP, NUM) of betas; NUM is rounded to an integer",
    )
    p.add_argument("--n", type=integer(1), default=32, help="tokens per system")
    p.add_argument("--d", type=integer(1), default=2, help="dimension of the sphere's space")
    p.add_argument("--batch", type=integer(1), default=FullDefault(512, 2048), help="systems per beta")
    p.add_argument("--t-max", type=real(above=0.0), default=30.0, help="end time")
    p.add_argument("--dt", type=real(above=0.0), default=0.1, help="Euler step")
    p.add_argument(
        "--checkpoints", type=integer(2), default=FullDefault(100, 200), help="times where statistics are taken"
    )
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA", help="softmax (SA) or unnormalised (USA)")
    p.add_argument("--interaction", choices=ensembles.INTERACTIONS, default="identity", help="B = Q^T K")
    p.add_argument("--value", choices=ensembles.VALUES, default="identity", help="V")
    p.add_argument("--draw", choices=ClusteringEnsemble.DRAWS, default="system", help="one draw of (B, V) per ...")
    p.add_argument(
        "--regen-period",
        type=real(above=0.0),
        default=None,
        help="re-draw (B, V) every this much time (default: never)",
    )
    p.add_argument(
        "--usa-step-correction",
        action="store_true",
        help="the authors' USA step dt / max(sqrt(beta) e^(beta - 1/2), 1)",
    )
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786 (default: here)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def config_from_args(args):
    start, stop, num = args.betas
    ensemble = ClusteringEnsemble(
        n=args.n,
        d=args.d,
        batch=args.batch,
        t_max=args.t_max,
        dt=args.dt,
        checkpoints=args.checkpoints,
        dynamics=args.dynamics,
        interaction=args.interaction,
        value=args.value,
        draw=args.draw,
        regen_period=args.regen_period,
        usa_step_correction=args.usa_step_correction,
        seed=args.seed,
    )
    return PhaseDiagramConfig(betas=tuple(np.linspace(start, stop, int(round(num)))), ensemble=ensemble)


def output_paths(args):
    """The results file of the command line's config and the files drawn from it."""
    config = config_from_args(args)
    c = config.ensemble
    path = result_path(args.out, f"phase_diagram_{c.dynamics}_d{c.d}_n{c.n}", config)
    return path, [figure_path(path)]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.betas[2] < 1:
        parser.error(f"argument --betas: NUM must be >= 1, got {args.betas[2]:g}")
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    result = run(config_from_args(args), path, progress=not args.no_progress, scheduler=args.scheduler)
    plot(path)
    final = result.density[:, -1]
    print(f"saved {path} and {figure_path(path)}")
    print("final density at t = %g:" % result.ts[-1])
    every = max(1, len(result.betas) // 9)
    for beta, dens, clus in zip(result.betas[::every], final[::every], result.clusters[:, -1][::every]):
        print(f"  beta = {beta:5.2f}: density {dens:.3f}, median clusters {clus:g}")
    return path


if __name__ == "__main__":
    main()
