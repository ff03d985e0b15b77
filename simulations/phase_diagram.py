"""The (t, beta) phase diagram of clustering (Geshkovski et al., 2023).

Quick default (under a minute on 2 cores): d = 2, n = 32, SA, 45 betas in [0.1, 9], 512
systems per beta, t_max = 30, dt = 0.1, 100 checkpoints. ``--full`` gives the authors'
defaults: 90 betas, 2048 systems, 200 checkpoints.

Results go to an HDF5 file named by a hash of the configuration (a rerun skips the betas
already finished); the figure is drawn from that file, next to it.

    python -m simulations.phase_diagram [--full] [--dynamics USA --t-max 1] [--out DIR]
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from particles import PhaseDiagramConfig, ensembles, load_phase_diagram, run_phase_diagram
from particles.figures import plot_phase_diagram


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="the authors' defaults: 90 betas, 2048 systems, 200 checkpoints")
    p.add_argument(
        "--betas",
        type=float,
        nargs=3,
        metavar=("START", "STOP", "NUM"),
        default=None,
        help="linspace of betas (default 0.1 9 45; --full: 0.1 9 90)",
    )
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--d", type=int, default=2)
    p.add_argument("--batch", type=int, default=None, help="systems per beta (default 512; --full: 2048)")
    p.add_argument("--t-max", type=float, default=30.0)
    p.add_argument("--dt", type=float, default=0.1)
    p.add_argument("--checkpoints", type=int, default=None, help="default 100; --full: 200")
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA")
    p.add_argument("--interaction", choices=ensembles.INTERACTIONS, default="identity", help="B = Q^T K")
    p.add_argument("--value", choices=ensembles.VALUES, default="identity", help="V")
    p.add_argument("--draw", choices=PhaseDiagramConfig.DRAWS, default="system", help="one draw of (B, V) per ...")
    p.add_argument("--regen-period", type=float, default=None, help="re-draw (B, V) every this much time")
    p.add_argument(
        "--usa-step-correction",
        action="store_true",
        help="the authors' USA step dt / max(sqrt(beta) e^(beta - 1/2), 1)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--out", type=Path, default=Path("results/phase_diagram"))
    return p.parse_args(argv)


def config_from_args(args):
    start, stop, num = args.betas or (0.1, 9.0, 90 if args.full else 45)
    return PhaseDiagramConfig(
        betas=tuple(np.linspace(start, stop, int(num))),
        n=args.n,
        d=args.d,
        batch=args.batch or (2048 if args.full else 512),
        t_max=args.t_max,
        dt=args.dt,
        checkpoints=args.checkpoints or (200 if args.full else 100),
        dynamics=args.dynamics,
        interaction=args.interaction,
        value=args.value,
        draw=args.draw,
        regen_period=args.regen_period,
        usa_step_correction=args.usa_step_correction,
        seed=args.seed,
    )


def config_hash(config):
    items = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in config.as_dict().items()}
    return hashlib.sha1(json.dumps(items, sort_keys=True).encode()).hexdigest()[:10]


def main(argv=None):
    args = parse_args(argv)
    config = config_from_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"phase_diagram_{config.dynamics}_d{config.d}_n{config.n}_{config_hash(config)}"
    store = stem.with_suffix(".h5")
    run_phase_diagram(config, store=store, scheduler=args.scheduler, progress=True)
    result = load_phase_diagram(store, config)
    plot_phase_diagram(result, stem.with_suffix(".png"))
    final = result.density[:, -1]
    print(f"saved {store} and {stem.with_suffix('.png')}")
    print("final density at t = %g:" % result.ts[-1])
    for beta, dens, clus in zip(
        result.betas[:: max(1, len(result.betas) // 9)],
        final[:: max(1, len(result.betas) // 9)],
        result.clusters[:, -1][:: max(1, len(result.betas) // 9)],
    ):
        print(f"  beta = {beta:5.2f}: density {dens:.3f}, median clusters {clus:g}")


if __name__ == "__main__":
    main()
