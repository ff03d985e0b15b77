"""Metastability: the staircase of cluster counts against log t for several beta, its
plateaus, and how their lengths grow with beta (theory note, section 4).

    python -m simulations.metastability [--betas 2 4 6 8 10 12] [--t-max 1e4] [--out DIR]

Results go to HDF5 (one entry per beta; a rerun skips finished betas); the figure is drawn
from that file, next to it.
"""

import argparse
from pathlib import Path

import numpy as np

from particles import sample_sphere
from particles.figures import plot_metastability
from particles.io import ResultStore
from particles.metastability import find_plateaus, log_time_grid, staircase


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
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
    p.add_argument("--out", type=Path, default=Path("results/metastability"))
    return p.parse_args(argv)


def make_config(args):
    """The run's parameters, stored with the results (a rerun must match them)."""
    return dict(
        betas=np.asarray(args.betas, dtype=float),
        n=args.n,
        d=args.d,
        batch=args.batch,
        t_max=args.t_max,
        dt=args.dt,
        tol=args.tol,
        dynamics=args.dynamics,
        seed=args.seed,
        points_per_decade=args.points_per_decade,
    )


def main(argv=None):
    args = parse_args(argv)
    ts = log_time_grid(args.dt, args.t_max, args.points_per_decade)
    config = make_config(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"metastability_{args.dynamics}_d{args.d}_n{args.n}.h5"
    store = ResultStore(path, config=config)
    # One start shared by all betas, so that only beta changes along the figure.
    x0 = sample_sphere(args.n, args.d, batch=args.batch, seed=args.seed)
    for k, beta in enumerate(args.betas):
        key = f"beta_{k:04d}"
        if store.done(key):
            continue
        counts = staircase(x0, beta, ts, dt=args.dt, tol=args.tol, dynamics=args.dynamics)
        store.save(key, beta=beta, ts=ts, counts=counts)
        print(f"beta = {beta:g}: median final clusters {np.median(counts[-1]):g}")
    plot_metastability(path, config, path.with_suffix(".png"))
    print(f"saved {path} and {path.with_suffix('.png')}")
    for k, beta in enumerate(args.betas):
        entry = store.load(f"beta_{k:04d}")
        lengths = [
            max((p.log_length for p in find_plateaus(entry["ts"], c) if p.clusters >= 2), default=0.0)
            for c in entry["counts"].T
        ]
        print(f"beta = {beta:5.2f}: median log-length of the longest multi-cluster plateau {np.median(lengths):.2f}")


if __name__ == "__main__":
    main()
