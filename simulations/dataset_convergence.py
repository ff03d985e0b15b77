"""Loss landscape versus dataset size: |L_{k+1} - L_k| and ||H_{k+1} - H_k||_F against k at fixed parameters.

One-layer pre-LN transformer at initialisation, 5-digit addition, cross-entropy on the answer digits of each
sequence (one sequence = one sample). The empirical loss L_k and its exact Hessian H_k (float64 autograd, over
the chosen parameter groups) over the first k samples are updated one sample at a time; the log-log slopes
of binned medians (k >= 10) are fitted and compared with the rate -1 of theory note §4.5
(Petrov, Kiselev, Meshkov & Grabovoy, 2025). Chunks go to HDF5 as they finish (a rerun resumes); the figure is
drawn from the file.

Quick default: d_model 8, Hessian over W_Q and W_V (128 parameters), N = 1000 (about a minute idle,
2 minutes measured under a load of 8).
``--full``: N = 5000 and the groups Q, V, LN1, W1 (400 parameters).

    python -m simulations.dataset_convergence [--full] [--samples N] [--groups Q,V] [--out results/dataset_convergence]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hessian.dataset_size import (
    THEORY_RATE,
    DatasetConfig,
    load_dataset_convergence,
    plot_dataset_convergence,
    run_dataset_convergence,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="N = 5000, groups Q,V,LN1,W1")
    p.add_argument("--samples", type=int, default=None, help="N (default 1000; --full: 5000)")
    p.add_argument(
        "--groups",
        default=None,
        help="comma-separated groups of hessian.block.GROUPS (default Q,V; --full: Q,V,LN1,W1)",
    )
    p.add_argument("--d-model", type=int, default=8)
    p.add_argument("--d-mlp", type=int, default=None, help="default 4 d_model")
    p.add_argument("--chunk", type=int, default=100, help="samples per saved chunk")
    p.add_argument("--seed", type=int, default=4321, help="data seed")
    p.add_argument("--k-min", type=int, default=10, help="smallest k in the rate fit")
    p.add_argument("--threads", type=int, default=None, help="torch threads (speed only)")
    p.add_argument("--out", type=Path, default=Path("results/dataset_convergence"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> DatasetConfig:
    return DatasetConfig(
        d_model=args.d_model,
        d_mlp=args.d_mlp or 4 * args.d_model,
        groups=args.groups or ("Q,V,LN1,W1" if args.full else "Q,V"),
        num_samples=args.samples or (5000 if args.full else 1000),
        chunk=args.chunk,
        data_seed=args.seed,
    )


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    path = run_dataset_convergence(config, args.out / f"{config.name()}.h5", progress=not args.no_progress)
    res = load_dataset_convergence(path)
    png = plot_dataset_convergence(path, k_min=args.k_min)
    rates = res.rates(k_min=args.k_min)
    rows = {
        key: dict(slope=fit.slope, ci=fit.ci, theory=THEORY_RATE, bins=int(fit.centres.size))
        for key, fit in rates.items()
    }
    lines = [
        config.name(),
        f"{res.seconds:.1f} s of Hessian computation, {len(config.blocks())} parameter tensors ({config.groups}), N = {config.num_samples}",
        f"|L_(k+1) - L_k|    : fitted slope {rates['loss'].slope:.3f} +- {rates['loss'].ci:.3f} (95%), theory {THEORY_RATE:g}",
        f"||H_(k+1) - H_k||_F: fitted slope {rates['hessian'].slope:.3f} +- {rates['hessian'].ci:.3f} (95%), theory {THEORY_RATE:g}",
        f"(binned medians over k >= {args.k_min}; L_N = {float(np.nanmean(res.losses)):.4f})",
    ]
    summary = "\n".join(lines) + "\n"
    path.with_name(path.stem + "_summary.txt").write_text(summary)
    path.with_name(path.stem + "_rates.json").write_text(json.dumps(rows, indent=1))
    print(summary)
    print(f"saved {path}, {png} and {path.stem}_summary.txt")
    return path


if __name__ == "__main__":
    main()
