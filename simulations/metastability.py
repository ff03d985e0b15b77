"""Metastability: the staircase of cluster counts against log t for several beta, its
plateaus, and how their lengths grow with beta (Geshkovski et al., 2023).

    python -m simulations.metastability [--betas 2 4 6 8 10 12] [--t-max 1e4] [--out DIR]

The defaults are the full sizes (``--full`` changes nothing). Results go to
``<out>/metastability_<dynamics>_d<d>_n<n>_<digest>.h5`` through ``particles.io.ResultStore``
(one entry per beta; a rerun skips finished betas); the figure is drawn from that file, next
to it.
"""

import dataclasses
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from particles import sample_sphere
from particles.metastability import find_plateaus, log_time_grid, staircase
from simulations.common.censored_fit import CensoredLineFit, fit_censored_line
from simulations.common.cli import config_or_exit, integer, real, refuse_existing, set_threads, study_parser
from simulations.common.figures import figure_path, finish, panels
from simulations.common.naming import result_path
from simulations.common.store import open_study_store

STUDY = "metastability"


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetastabilityConfig:
    """Staircases of ``batch`` systems per beta, all from one shared uniform start.

    Attributes:
        betas: inverse temperatures.
        n, d: tokens and dimension.
        batch: systems per beta.
        t_max, dt: last time and the fixed step of ``particles.metastability.staircase``.
        points_per_decade: times of the log-spaced grid from dt to t_max.
        tol: cluster linkage tolerance.
        dynamics: "SA" or "USA".
        seed: seed of the initial tokens.
    """

    betas: tuple = (2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
    n: int = 32
    d: int = 2
    batch: int = 16
    t_max: float = 1e4
    dt: float = 0.1
    points_per_decade: int = 20
    tol: float = 1e-3
    dynamics: str = "SA"
    seed: int = 0

    def as_dict(self):
        return {**dataclasses.asdict(self), "betas": np.asarray(self.betas, dtype=float)}


def _key(k):
    return f"beta_{k:04d}"


def run(config, path, *, progress=True):
    """Staircases for every beta into ``path``; a rerun skips finished betas.

    Returns:
        ``pathlib.Path`` of the file.
    """
    store, _ = open_study_store(path, STUDY, config)
    ts = log_time_grid(config.dt, config.t_max, config.points_per_decade)
    # One start shared by all betas, so that only beta changes along the figure.
    x0 = sample_sphere(config.n, config.d, batch=config.batch, seed=config.seed)
    todo = [k for k in range(len(config.betas)) if not store.done(_key(k))]
    steps = int(np.ceil(ts[-1] / config.dt - 1e-9))
    total = steps * len(config.betas)
    bar = tqdm(
        total=total,
        initial=total - steps * len(todo),
        unit="step",
        unit_scale=True,
        desc=f"metastability, {len(todo)} of {len(config.betas)} betas to go",
        disable=not progress,
    )
    with bar:
        for k in todo:
            beta = config.betas[k]
            counts = staircase(
                x0, beta, ts, dt=config.dt, tol=config.tol, dynamics=config.dynamics, on_steps=bar.update
            )
            store.save(_key(k), beta=beta, ts=ts, counts=counts)
            if progress:
                bar.write(f"beta = {beta:g}: median final clusters {np.median(counts[-1]):g}")
    return path


def load(path):
    """The staircases of a file written by ``run``.

    Returns:
        dict with ``config``, ``betas`` (B,), ``ts`` (m,) and ``counts`` (B, m, batch).
    """
    store, config = open_study_store(path, STUDY)
    entries = [store.load(_key(k)) for k in range(len(config["betas"]))]
    return {
        "config": config,
        "betas": np.array([float(e["beta"]) for e in entries]),
        "ts": entries[0]["ts"],
        "counts": np.stack([e["counts"] for e in entries]),
    }


def longest_plateaus(ts, counts):
    """The longest plateau with >= 2 clusters of each system, or None where it has none.

    Args:
        ts: (m,) times; counts: (m, batch) cluster counts.
    """
    out = []
    for c in counts.T:
        plateaus = [p for p in find_plateaus(ts, c) if p.clusters >= 2]
        out.append(max(plateaus, key=lambda p: p.end - p.start) if plateaus else None)
    return out


class PlateauGrowth(NamedTuple):
    """Every system's longest multi-cluster plateau, and how its duration grows with beta.

    Attributes:
        betas, durations: (m,) beta and plateau duration (end - start) of each system that has one.
        censored: (m,) True where the system still had >= 2 clusters at t_max: its duration is then
            only a lower bound (the plateau, or a later one, may run on).
        fit: the ``CensoredLineFit`` of log(duration) against beta; its slope is the exponential rate.
        t_max: the last time of the runs.
    """

    betas: np.ndarray
    durations: np.ndarray
    censored: np.ndarray
    fit: CensoredLineFit
    t_max: float


def plateau_growth(data, *, confidence=0.95):
    """The longest multi-cluster plateau of every system and the censored fit of log(duration) on beta.

    A system that still has >= 2 clusters at the last time was cut by t_max: its longest plateau is a
    lower bound of the true one. A least-squares line through such points bends down where most
    are cut (large beta); the fit here knows they are lower bounds (``fit_censored_line``).

    Args:
        data: as returned by ``load``.
        confidence: level of the rate's interval.

    Returns:
        a ``PlateauGrowth``.
    """
    betas, durations, censored = [], [], []
    for beta, counts in zip(data["betas"], data["counts"]):
        for p, still_split in zip(longest_plateaus(data["ts"], counts), counts[-1] >= 2):
            if p is not None:
                betas.append(beta)
                durations.append(p.end - p.start)
                censored.append(bool(still_split))
    betas, durations, censored = np.array(betas), np.array(durations), np.array(censored, dtype=bool)
    fit = fit_censored_line(betas, np.log(durations), censored, confidence=confidence)
    return PlateauGrowth(betas, durations, censored, fit, float(data["ts"][-1]))


def format_growth(data, *, confidence=0.95):
    """The printed summary: per beta the median duration and how many are cut at t_max, then the
    fitted rate with its interval and what the theory says about it."""
    growth = plateau_growth(data, confidence=confidence)
    lines = [f"{'beta':>6} {'systems':>8} {'median duration':>16} {'cut at t_max':>13}"]
    for beta in data["betas"]:
        at = growth.betas == beta
        cut = int(growth.censored[at].sum())
        # Every true duration is >= the measured one, so a median with any cut duration is a lower bound.
        median = "-" if not at.any() else (">= " if cut else "") + f"{np.median(growth.durations[at]):.4g}"
        lines.append(f"{beta:6.2f} {int(at.sum()):8d} {median:>16} {cut:13d}")
    fit = growth.fit
    lines.append(
        f"(>=: some durations of that beta are cut at t_max = {growth.t_max:g}, so the median is a lower bound)"
    )
    lines.append(
        f"log duration = rate * beta + c, censored maximum likelihood ({fit.num_censored} of {fit.num_points} "
        f"durations are lower bounds): rate {fit.slope:.2f}, "
        f"{confidence:.0%} interval [{fit.ci[0]:.2f}, {fit.ci[1]:.2f}]"
    )
    lines.append(f"theory: {theory_verdict(fit)}")
    return "\n".join(lines)


def theory_verdict(fit):
    """Whether the fitted rate agrees with Geshkovski, Koubbi, Polyanskiy & Rigollet (2024): the plateau
    lasts at least (eps / n) e^((1 - alpha) beta), a positive rate (alpha < 1, the largest inner product
    across clusters, is not measured here, so only the sign is tested)."""
    low, high = fit.ci
    interval = f"{fit.confidence:.0%} interval [{low:.2f}, {high:.2f}]"
    if not np.isfinite(fit.slope):
        return "no fit (too few uncensored plateaus)"
    if low > 0:
        return f"agrees: the rate is positive (theory: >= 1 - alpha > 0) over the whole {interval}"
    if high < 0:
        return f"disagrees: the rate is negative over the whole {interval} (theory: >= 1 - alpha > 0)"
    return f"undecided: the {interval} holds 0 (theory: rate >= 1 - alpha > 0)"


def plot(path, *, fig=None, ax=None, save=True):
    """Staircases and plateau growth, drawn from the file.

    Left: median cluster count over systems against log t, one curve per beta. Right: the
    duration of each system's longest plateau with >= 2 clusters against beta (log scale);
    open triangles are lower bounds (the system still had >= 2 clusters at t_max). The line is
    the censored maximum-likelihood fit of log(duration) on beta, drawn up to t_max only.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the two panels into; None for a new one.
        ax: two axes to draw on instead.
        save: True for the PNG beside ``path``, False for no file, or a path.

    Returns:
        the ``Figure``.
    """
    data = load(path)
    config = data["config"]
    fig, (left, right) = panels(1, 2, size=(12, 4.6), fig=fig, ax=ax)
    ts = data["ts"]
    for beta, counts in zip(data["betas"], data["counts"]):
        left.step(ts, np.median(counts, axis=1), where="post", label=f"beta = {beta:g}")
    left.set_xscale("log")
    left.set_yscale("log")
    n = int(config["n"])
    ticks = [k for k in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128) if k <= n]
    left.set_yticks(ticks, [str(k) for k in ticks])
    left.minorticks_off()
    left.set_xlabel("t")
    left.set_ylabel("median number of clusters")
    left.legend(fontsize=8)
    growth = plateau_growth(data)
    cut = growth.censored
    right.semilogy(growth.betas[~cut], growth.durations[~cut], "o", color="C0", alpha=0.5, label="ended before t_max")
    right.semilogy(
        growth.betas[cut], growth.durations[cut], "^", mfc="none", color="C3", label="still running at t_max (>=)"
    )
    right.axhline(growth.t_max, color="0.5", lw=0.8, ls=":")
    right.text(right.get_xlim()[0], growth.t_max, " t_max", va="bottom", fontsize=8, color="0.4")
    fit = growth.fit
    if np.isfinite(fit.slope):
        grid = np.linspace(growth.betas.min(), growth.betas.max(), 200)
        line = np.exp(fit.intercept + fit.slope * grid)
        below = line <= growth.t_max  # above t_max the runs could not have seen it
        right.semilogy(
            grid[below],
            line[below],
            "k--",
            label=f"censored ML fit: rate {fit.slope:.2f} [{fit.ci[0]:.2f}, {fit.ci[1]:.2f}] ({fit.confidence:.0%})",
        )
    right.legend(fontsize=8, loc="lower right")
    right.set_xlabel(r"$\beta$")
    right.set_ylabel("longest plateau with >= 2 clusters")
    right.set_title(f"{fit.num_censored} of {fit.num_points} durations are lower bounds", fontsize=9)
    fig.suptitle(
        f"{config['dynamics']}, d = {config['d']}, n = {n}, {config['batch']} systems per beta, dt = {config['dt']:g}, "
        f"t_max = {config['t_max']:g}, cluster tolerance {config['tol']:g}",
        fontsize=10,
    )
    return finish(fig, save, figure_path(path))


#: Time measured on the 2-core development machine (one core's worth; README command).
TIMING = "default ~15 s"


def build_parser():
    p = study_parser(
        "metastability", __doc__, seed=0, seed_help="seed of the initial tokens", timing=TIMING, full=False
    )
    p.add_argument(
        "--betas", type=real(0.0), nargs="+", default=[2.0, 4.0, 6.0, 8.0, 10.0, 12.0], help="inverse temperatures"
    )
    p.add_argument("--n", type=integer(1), default=32, help="tokens per system")
    p.add_argument("--d", type=integer(1), default=2, help="dimension")
    p.add_argument("--batch", type=integer(1), default=16, help="systems per beta")
    p.add_argument("--t-max", type=real(above=0.0), default=1e4, help="end time (log-spaced record times from dt)")
    p.add_argument("--dt", type=real(above=0.0), default=0.1, help="Euler step")
    p.add_argument("--points-per-decade", type=integer(1), default=20, help="record times per decade of t")
    p.add_argument("--tol", type=real(above=0.0), default=1e-3, help="cluster linkage tolerance")
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA", help="softmax (SA) or unnormalised (USA)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def make_config(args):
    """The study's config from the command line."""
    return MetastabilityConfig(
        betas=tuple(float(b) for b in args.betas),
        n=args.n,
        d=args.d,
        batch=args.batch,
        t_max=args.t_max,
        dt=args.dt,
        points_per_decade=args.points_per_decade,
        tol=args.tol,
        dynamics=args.dynamics,
        seed=args.seed,
    )


def output_paths(args):
    """The results file of the command line's config and the files drawn from it."""
    config = make_config(args)
    path = result_path(args.out, f"metastability_{config.dynamics}_d{config.d}_n{config.n}", config)
    return path, [figure_path(path)]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    run(make_config(args), path, progress=not args.no_progress)
    plot(path)
    print(f"saved {path} and {figure_path(path)}")
    print(format_growth(load(path)))
    return path


if __name__ == "__main__":
    main()
