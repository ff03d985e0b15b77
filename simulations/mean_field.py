r"""The mean-field limit on the circle: n particles against the continuity equation.

Tokens x_i = (cos theta_i, sin theta_i), n of them drawn from a density rho_0, follow the
particle system (``particles.simulate``, RK4); the density follows the continuity equation
(``particles.mean_field.solve``). The study measures, for n in ``ns`` and ``ensembles``
independent draws each:

- W1(empirical measure at t, rho(t)) against n at several t, with the fitted rate
  (n^{-1/2} is expected while the dynamics is smooth; merges of metastable clusters amplify
  the fluctuations);
- the energy E_beta(t) along the PDE and along the particles;
- the time of the first merge of two clusters for the PDE and for each particle run
  (clusters: arcs of a ``bins``-cell histogram above ``threshold`` holding >= ``min_mass``).

rho_0 puts three bumps on a uniform floor; the first two, ``separation`` apart, merge first.
Results: the PDE trajectory in ``<stem>_density.h5`` (``particles.io.density``, resumable),
the particle results in ``<stem>.h5`` (``particles.io.ResultStore``, one entry per n, a rerun
skips finished n); the figure is drawn from both files into ``<stem>.png``.

Quick defaults: n up to 256, 4 draws, t <= 12 (well under a minute). ``--full``: n from 64 to
65536 (the particle side is
O(n^2) per step: hours on a CPU).

    python -m simulations.mean_field
    python -m simulations.mean_field --full --out results/mean_field
"""

import dataclasses
import time
from pathlib import Path

import numpy as np

import particles
from particles.mean_field import (
    angles_to_points,
    cluster_counts,
    coarsen,
    empirical_energy,
    energy,
    first_merge_time,
    grid,
    histogram_density,
    load_solution,
    normalise,
    points_to_angles,
    sample_angles,
    solve,
    wasserstein_circle,
)
from simulations.common.cli import (
    FullDefault,
    config_or_exit,
    integer,
    real,
    refuse_existing,
    set_threads,
    study_parser,
)
from simulations.common.figures import figure_path, finish, panels
from simulations.common.fits import fit_power_law
from simulations.common.naming import result_path
from simulations.common.store import open_study_store

STUDY = "mean_field"
QUICK_NS = (32, 64, 128, 256)
FULL_NS = tuple(64 * 2**k for k in range(11))  # 64 ... 65536


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeanFieldConfig:
    """One initial density, its PDE solution and particle ensembles of several sizes.

    Attributes:
        beta, dynamics: the dynamics (Q = K = V = I).
        M: cells of the PDE grid. t_max: final time. save_dt: spacing of the frames.
        ns: particle numbers. ensembles: independent draws per n. dt: RK4 step of the
            particles. seed: of the draws (draw k of size n uses seed + n + k).
        separation, width, floor: rho_0 = floor + bumps of width ``width`` at 0 (weight 1),
            ``separation`` (0.8) and 3.6 (1), normalised.
        bins, threshold, min_mass: clusters (see ``particles.mean_field.clusters``).
        fit_times: times at which W1 against n is fitted and drawn.
    """

    beta: float = 5.0
    dynamics: str = "SA"
    M: int = 512
    t_max: float = 12.0
    save_dt: float = 0.1
    ns: tuple = QUICK_NS
    ensembles: int = 4
    dt: float = 0.1
    seed: int = 0
    separation: float = 1.3
    width: float = 0.35
    floor: float = 0.3
    bins: int = 64
    threshold: float = 1.0 / np.pi
    min_mass: float = 0.05
    fit_times: tuple = (0.0, 2.0, 4.0, 8.0, 12.0)

    def __post_init__(self):
        if abs(self.save_dt / self.dt - round(self.save_dt / self.dt)) > 1e-9:
            raise ValueError(f"save_dt must be a multiple of dt = {self.dt}, got {self.save_dt}")
        if self.M % self.bins:
            raise ValueError(f"bins must divide M = {self.M}, got {self.bins}")

    def as_dict(self):
        return {
            **dataclasses.asdict(self),
            "ns": np.asarray(self.ns, dtype=np.int64),
            "fit_times": np.asarray(self.fit_times, dtype=float),
        }

    def rho0(self):
        theta = grid(self.M)
        kappa = 1.0 / self.width**2
        bump = lambda centre: np.exp(kappa * (np.cos(theta - centre) - 1.0))
        return normalise(self.floor + bump(0.0) + 0.8 * bump(self.separation) + bump(3.6))

    def times(self):
        steps = int(round(self.t_max / self.save_dt))
        return self.save_dt * np.arange(steps + 1)


def density_path(path):
    """The PDE trajectory's file beside the study's file."""
    path = Path(path)
    return path.with_name(path.stem + "_density.h5")


def _key(n):
    return f"n_{n:06d}"


def run(config, path, *, progress=True):
    """The PDE, then every n (a rerun resumes the PDE and skips finished n).

    Returns:
        ``pathlib.Path`` of the study's file.
    """
    path = Path(path)
    store, _ = open_study_store(path, STUDY, config)
    ts = config.times()
    start = time.perf_counter()
    pde = solve(
        config.rho0(),
        beta=config.beta,
        t_max=ts[-1],
        dynamics=config.dynamics,
        ts=ts,
        store=density_path(path),
        progress=progress,
    )
    if progress:
        print(f"PDE on {config.M} cells to t = {ts[-1]:g}: {time.perf_counter() - start:.1f} s, {pde.steps[-1]} steps")
    save_every = int(round(config.save_dt / config.dt))
    for n in config.ns:
        if store.done(_key(n)):
            continue
        store.save(_key(n), **_particle_runs(config, pde, n, save_every, progress))
    return path


def _particle_runs(config, pde, n, save_every, progress):
    E = config.ensembles
    T = len(pde.ts)
    w1 = np.empty((E, T))
    counts = np.empty((E, T), dtype=np.int64)
    energies = np.empty((E, T))
    plateau = int(_pde_counts(config, pde.rho).max())
    hist = np.empty((T, config.bins))
    spent = 0.0
    angles0 = sample_angles(pde.rho[0], n, seed=config.seed + n, batch=E)
    for k in range(E):
        start = time.perf_counter()
        traj = particles.simulate(
            angles_to_points(angles0[k]),
            beta=config.beta,
            t_max=pde.ts[-1],
            dt=config.dt,
            dynamics=config.dynamics,
            method="rk4",
            save_every=save_every,
        )
        spent += time.perf_counter() - start
        angles = points_to_angles(traj.xs)
        for j in range(T):
            w1[k, j] = wasserstein_circle(angles[j], (pde.theta, pde.rho[j]))
            h = histogram_density(angles[j], config.bins)
            counts[k, j] = cluster_counts(h, threshold=config.threshold, min_mass=config.min_mass)[0]
            if k == 0:
                hist[j] = h
        energies[k] = empirical_energy(angles, config.beta)
    # Particle runs merge from the PDE's metastable count: flicker above it is noise.
    merges = np.array([first_merge_time(pde.ts, c, clusters=plateau) for c in counts])
    if progress:
        print(
            f"n = {n:6d}: {spent / E:7.2f} s per run, mean W1 at t_max {w1[:, -1].mean():.3g}, "
            f"median first merge {np.nanmedian(merges) if np.isfinite(merges).any() else np.nan:.3g}"
        )
    return dict(n=n, w1=w1, counts=counts, energy=energies, merge_times=merges, hist=hist, seconds_per_run=spent / E)


def _pde_counts(config, rho):
    get = config.get if isinstance(config, dict) else lambda name: getattr(config, name)
    return cluster_counts(coarsen(rho, int(get("bins"))), threshold=get("threshold"), min_mass=get("min_mass"))


def load(path):
    """The study's results.

    Returns:
        dict with ``config`` (dict), ``ts`` (T,), ``theta`` (M,), ``rho`` (T, M) (the PDE),
        ``pde_energy`` (T,), ``pde_counts`` (T,), ``pde_merge`` (float), ``ns`` (N,), and
        stacked over n: ``w1`` (N, E, T), ``energy`` (N, E, T), ``counts`` (N, E, T),
        ``merge_times`` (N, E), ``hist`` (N, T, bins), ``seconds_per_run`` (N,).
    """
    store, config = open_study_store(path, STUDY)
    pde = load_solution(density_path(path))
    counts = _pde_counts(config, pde.rho)
    out = {
        "config": config,
        "ts": pde.ts,
        "theta": pde.theta,
        "rho": pde.rho,
        "pde_energy": energy(pde.theta, pde.rho, config["beta"]),
        "pde_counts": counts,
        "pde_merge": first_merge_time(pde.ts, counts),
    }
    entries = [store.load(_key(int(n))) for n in config["ns"] if store.done(_key(int(n)))]
    out["ns"] = np.array([int(e["n"]) for e in entries])
    for name in ("w1", "energy", "counts", "merge_times", "hist", "seconds_per_run"):
        out[name] = np.array([e[name] for e in entries])
    return out


def w1_fits(data):
    """{t: LineFit} of log W1 against log n (every draw a point) at the config's fit times."""
    fits = {}
    for t in data["config"]["fit_times"]:
        j = int(np.argmin(np.abs(data["ts"] - t)))
        ns = np.repeat(data["ns"], data["w1"].shape[1])
        fits[float(data["ts"][j])] = fit_power_law(ns.astype(float), data["w1"][:, :, j].ravel())
    return fits


def plot(path, *, fig=None, ax=None, save=True):
    """Six panels drawn from the files, saved as ``<stem>.png``: the PDE density as a
    (theta, t) heat map; PDE density and the histogram of the largest n at three times; W1
    against n at the fit times with the fitted lines; the PDE's and particles' energy; the
    cluster counts; the first merge time against n (median, quartiles) and the PDE's.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the six panels into; None for a new one.
        ax: a (2, 3) array of axes to draw on instead.
        save: True for the PNG beside ``path``, False for no file, or a path.

    Returns:
        the ``Figure``.
    """
    data = load(path)
    ts, theta, rho = data["ts"], data["theta"], data["rho"]
    fig, axes = panels(2, 3, size=(16, 9), fig=fig, ax=ax, squeeze=False)
    ax = axes[0, 0]
    image = ax.pcolormesh(theta, ts, np.log10(np.maximum(rho, 1e-6)), shading="nearest", cmap="magma")
    fig.colorbar(image, ax=ax, label=r"$\log_{10}\rho$")
    ax.set_xlabel(r"$\theta$")
    ax.set_ylabel("t")
    ax.set_title(f"PDE density, beta = {data['config']['beta']:g} {data['config']['dynamics']}")

    ax = axes[0, 1]
    bins = int(data["config"]["bins"])
    centres = 2 * np.pi * np.arange(bins) / bins
    for j, colour in zip(np.linspace(0, len(ts) - 1, 3).astype(int), ("C0", "C1", "C2")):
        ax.plot(theta, rho[j], color=colour, label=f"PDE t = {ts[j]:g}")
        if len(data["ns"]):
            ax.bar(centres, data["hist"][-1, j], width=2 * np.pi / bins, color=colour, alpha=0.3)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel(r"$\theta$")
    ax.set_ylabel("density")
    ax.set_title(f"bars: histogram of n = {data['ns'][-1] if len(data['ns']) else 0}")
    ax.legend(fontsize=8)

    ax = axes[0, 2]
    for (t, fit), colour in zip(w1_fits(data).items(), [f"C{i}" for i in range(10)]):
        j = int(np.argmin(np.abs(ts - t)))
        mean = data["w1"][:, :, j].mean(axis=1)
        ax.loglog(data["ns"], mean, "o", color=colour)
        if np.isfinite(fit.slope):
            ax.loglog(
                data["ns"],
                np.exp(fit.intercept) * data["ns"] ** fit.slope,
                "--",
                color=colour,
                label=f"t = {t:g}: slope {fit.slope:.2f} ± {fit.ci:.2f}",
            )
    ax.set_xlabel("n")
    ax.set_ylabel(r"$W_1$(empirical, $\rho(t)$)")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    ax.plot(ts, data["pde_energy"], "k", lw=2, label="PDE")
    for i, n in enumerate(data["ns"]):
        if np.isfinite(data["energy"][i]).all():
            ax.plot(ts, data["energy"][i].mean(axis=0), lw=1, label=f"n = {n}")
    ax.set_xlabel("t")
    ax.set_ylabel(r"$E_\beta$")
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    ax.step(ts, data["pde_counts"], "k", where="post", lw=2, label="PDE")
    for i, n in enumerate(data["ns"]):
        ax.step(ts, np.median(data["counts"][i], axis=0), where="post", lw=1, label=f"n = {n} (median)")
    ax.set_xlabel("t")
    ax.set_ylabel("clusters")
    ax.legend(fontsize=7)

    ax = axes[1, 2]
    if len(data["ns"]):
        merges = data["merge_times"]
        q = np.array([np.nanpercentile(m, [25, 50, 75]) if np.isfinite(m).any() else [np.nan] * 3 for m in merges])
        ax.errorbar(data["ns"], q[:, 1], yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]], fmt="o", label="particles")
        ax.set_xscale("log")
    ax.axhline(data["pde_merge"], color="k", label="PDE")
    ax.set_xlabel("n")
    ax.set_ylabel("first merge time")
    ax.legend(fontsize=8)
    return finish(fig, save, figure_path(path))


TIMING = "quick defaults about 45 s of CPU; --full (n up to 65536) hours on a CPU (not run here)"


def build_parser():
    p = study_parser("mean_field", __doc__, timing=TIMING, seed=0, seed_help="seed of the particle draws")
    p.add_argument("--beta", type=real(0.0), default=5.0, help="inverse temperature")
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA", help="softmax (SA) or unnormalised (USA)")
    p.add_argument("--M", type=integer(8), default=FullDefault(512, 2048), help="PDE cells")
    p.add_argument("--t-max", type=real(above=0.0), default=FullDefault(12.0, 30.0), help="final time")
    p.add_argument("--ns", type=integer(2), nargs="+", default=FullDefault(QUICK_NS, FULL_NS), help="particle numbers")
    p.add_argument("--ensembles", type=integer(1), default=FullDefault(4, 8), help="draws per n")
    p.add_argument("--separation", type=real(above=0.0), default=1.3, help="distance of the first two bumps of rho_0")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def make_config(args):
    """The study's config from the command line."""
    t_max = args.t_max
    return MeanFieldConfig(
        beta=args.beta,
        dynamics=args.dynamics,
        M=args.M,
        t_max=t_max,
        ns=tuple(args.ns),
        ensembles=args.ensembles,
        separation=args.separation,
        seed=args.seed,
        fit_times=tuple(float(t) for t in np.round(np.array([0.0, 1 / 6, 1 / 3, 2 / 3, 1.0]) * t_max, 1)),
    )


def output_paths(args):
    """The results file of the command line's config and the files drawn from it."""
    config = make_config(args)
    path = result_path(args.out, f"mean_field_{config.dynamics}_beta{config.beta:g}", config)
    return path, [figure_path(path)]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    run(make_config(args), path, progress=not args.no_progress)
    plot(path)
    data = load(path)
    print(f"saved {path}, {density_path(path).name} and {figure_path(path).name}")
    print("W1(empirical, rho(t)) ~ n^slope:")
    for t, fit in w1_fits(data).items():
        print(f"  t = {t:5.1f}: slope {fit.slope:6.3f} ± {fit.ci:.3f} (95%, {fit.num_points} runs)")
    print(f"first merge: PDE t = {data['pde_merge']:.2f}")
    for n, merges, seconds in zip(data["ns"], data["merge_times"], data["seconds_per_run"]):
        finite = merges[np.isfinite(merges)]
        median = np.median(finite) if finite.size else np.nan
        print(f"  n = {n:6d}: median {median:6.2f} ({finite.size}/{merges.size} merged), {seconds:.2f} s per run")
    return path


if __name__ == "__main__":
    main()
