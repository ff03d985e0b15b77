"""Metastability: the staircase of cluster counts against log t for several beta, its
plateaus, and how their lengths grow with beta (theory note, section 4).

    python -m simulations.metastability [--betas 2 4 6 8 10 12] [--t-max 1e4] [--out DIR]

The defaults are the full sizes (``--full`` changes nothing). Results go to
``<out>/metastability_<dynamics>_d<d>_n<n>_<digest>.h5`` through ``particles.io.ResultStore``
(one entry per beta; a rerun skips finished betas); the figure is drawn from that file, next
to it.
"""

import dataclasses

import numpy as np

from particles import sample_sphere
from particles.metastability import find_plateaus, log_time_grid, staircase
from simulations.common.cli import study_parser
from simulations.common.figures import figure_path, new_figure, save_figure
from simulations.common.fits import fit_line
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
    for k, beta in enumerate(config.betas):
        if store.done(_key(k)):
            continue
        counts = staircase(x0, beta, ts, dt=config.dt, tol=config.tol, dynamics=config.dynamics)
        store.save(_key(k), beta=beta, ts=ts, counts=counts)
        if progress:
            print(f"beta = {beta:g}: median final clusters {np.median(counts[-1]):g}")
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


def plateau_growth(data):
    """(betas, durations) of every system's longest multi-cluster plateau, and the line fit
    of log(duration) against beta (its slope is the exponential rate)."""
    betas, durations = [], []
    for beta, counts in zip(data["betas"], data["counts"]):
        for p in longest_plateaus(data["ts"], counts):
            if p is not None:
                betas.append(beta)
                durations.append(p.end - p.start)
    betas, durations = np.array(betas), np.array(durations)
    return betas, durations, fit_line(betas, np.log(durations))


def plot(path):
    """Staircases and plateau growth, drawn from the file and saved as PNG beside it.

    Left: median cluster count over systems against log t, one curve per beta. Right: the
    duration of each system's longest plateau with >= 2 clusters against beta (log scale),
    with the fitted slope of log(duration) on beta (the theory bounds it below by 1 - alpha;
    plateaus still running at t_max are censored there).

    Returns:
        the ``Figure``.
    """
    data = load(path)
    fig = new_figure(12, 4.6)
    left, right = fig.subplots(1, 2)
    ts = data["ts"]
    for beta, counts in zip(data["betas"], data["counts"]):
        left.step(ts, np.median(counts, axis=1), where="post", label=f"beta = {beta:g}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("t")
    left.set_ylabel("median number of clusters")
    left.legend(fontsize=8)
    betas, durations, fit = plateau_growth(data)
    right.semilogy(betas, durations, "o", alpha=0.5)
    if np.isfinite(fit.slope):
        grid = np.linspace(betas.min(), betas.max(), 50)
        right.semilogy(
            grid,
            np.exp(fit.intercept + fit.slope * grid),
            "k--",
            label=f"fit: log duration = {fit.slope:.2f} beta + {fit.intercept:.1f}",
        )
        right.legend(fontsize=8)
    right.set_xlabel(r"$\beta$")
    right.set_ylabel("duration of the longest plateau with >= 2 clusters")
    save_figure(fig, figure_path(path))
    return fig


def parse_args(argv=None):
    p = study_parser(__doc__, out="results/metastability")
    p.add_argument("--betas", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--d", type=int, default=2)
    p.add_argument("--batch", type=int, default=16, help="systems per beta")
    p.add_argument("--t-max", type=float, default=1e4)
    p.add_argument("--dt", type=float, default=0.1)
    p.add_argument("--points-per-decade", type=int, default=20)
    p.add_argument("--tol", type=float, default=1e-3, help="cluster linkage tolerance")
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


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


def main(argv=None):
    args = parse_args(argv)
    config = make_config(args)
    path = result_path(args.out, f"metastability_{config.dynamics}_d{config.d}_n{config.n}", config)
    run(config, path, progress=not args.no_progress)
    plot(path)
    print(f"saved {path} and {figure_path(path)}")
    data = load(path)
    for beta, counts in zip(data["betas"], data["counts"]):
        lengths = [
            max((p.log_length for p in find_plateaus(data["ts"], c) if p.clusters >= 2), default=0.0) for c in counts.T
        ]
        print(f"beta = {beta:5.2f}: median log-length of the longest multi-cluster plateau {np.median(lengths):.2f}")
    return path


if __name__ == "__main__":
    main()
