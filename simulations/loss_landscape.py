"""Loss-landscape pictures of the reference 1-layer transformer (d_model 128) on 5-digit addition.

At initialisation and after a short Adam run (no stored checkpoint of this model exists: the training-curvature
runs are of d_model 8 and 16 pre-LN models), on the reference batch (64 sequences of 18 tokens, seed 1234,
cross-entropy on the answer digits; float64): the loss along the top Hessian eigenvector, on the plane of the
top two eigenvectors and on the plane of two random filter-normalised directions (Li et al., 2018), each with the
second-order model from the exact gradient and Hessian-vector products (dashed). Lines and planes go to HDF5 as
they are finished (a rerun resumes); one figure per point is drawn from the file.

Quick default: 150 Adam steps, a 31-point line and 15 x 15 planes: 38 s measured with ``--threads 1`` under a
load of 4 on the 2-core machine (5.5 minutes with two threads under a load of 7: each operation's thread
barrier then waits for a time slice; prefer ``--threads 1`` on a busy machine).
``--full``: 1000 Adam steps, a 101-point line and 51 x 51 planes.

    python -m simulations.loss_landscape [--full] [--out results/loss_landscape]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hessian.experiments.landscape import (
    PIECES,
    LandscapeConfig,
    load_landscape,
    plot_landscape,
    run_landscape,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="1000 Adam steps, 101-point line, 51 x 51 planes")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--d-mlp", type=int, default=None, help="default 4 d_model")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=None, help="default 150; --full: 1000; 0: initialisation only")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--points-line", type=int, default=None, help="default 31; --full: 101")
    p.add_argument("--points-plane", type=int, default=None, help="per axis; default 15; --full: 51")
    p.add_argument("--eig-span", type=float, default=2.0, help="eigenvector grids: +- eig_span sqrt(2 / lambda_1)")
    p.add_argument("--random-span", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (speed only)")
    p.add_argument("--out", type=Path, default=Path("results/loss_landscape"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> LandscapeConfig:
    full = args.full
    return LandscapeConfig(
        d_model=args.d_model,
        d_mlp=args.d_mlp or 4 * args.d_model,
        batch=args.batch,
        train_steps=args.train_steps if args.train_steps is not None else (1000 if full else 150),
        lr=args.lr,
        points_line=args.points_line or (101 if full else 31),
        points_plane=args.points_plane or (51 if full else 15),
        eig_span=args.eig_span,
        random_span=args.random_span,
    )


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    path = run_landscape(config, args.out / f"{config.name()}.h5", progress=not args.no_progress)
    pngs = plot_landscape(path)
    config, data = load_landscape(path)
    lines = [config.name(), ""]
    for point in config.points:
        line = data[f"{point}_{PIECES[0]}"]
        lam = line["eigenvalues"]
        seconds = sum(float(data[f"{point}_{pc}"]["seconds"]) for pc in PIECES)
        lines.append(
            f"{point:8s} L0 = {float(line['loss0']):.4f}  lambda_1, lambda_2 = {lam[0]:.4g}, {lam[1]:.4g}  ({seconds:.1f} s)"
        )
        for pc in PIECES:
            d = data[f"{point}_{pc}"]
            rel = np.max(np.abs(d["values"] - d["quadratic"])) / max(float(np.ptp(d["values"])), 1e-300)
            lines.append(
                f"    {pc:13s} loss in [{d['values'].min():.4f}, {d['values'].max():.4f}], max |L - q| / range {rel:.3f}"
            )
    summary = "\n".join(lines) + "\n"
    path.with_name(path.stem + "_summary.txt").write_text(summary)
    print(summary)
    print(f"saved {path}, {', '.join(str(p) for p in pngs)} and {path.stem}_summary.txt")
    return path


if __name__ == "__main__":
    main()
