"""Spectral norm of the input Jacobian dF/dX of softmax self-attention against the input scale s (X -> s X).

Dot-product self-attention is not globally Lipschitz (Kim, Papamakarios & Mnih, 2021); a LayerNorm in front
bounds it. For one head (L tokens, width d) and for the same head after a LayerNorm, ||dF/dX||_2 is computed
exactly (SVD of the dense float64 Jacobian, or Lanczos on J^T J with --method lanczos) on a log grid of s for
several random draws, with Gaussian tokens and with one token at the origin (Kim et al.'s construction).
Large-s exponents are fitted (per-draw log-log slopes over s >= s_fit, mean +- s.e.m.) and printed next to the
exponents derived in hessian/experiments/lipschitz.py (0, 2, -1, 0). Each draw goes to HDF5 as it finishes
(a rerun resumes); the figure is drawn from the file, next to it.

Default (L = 16, d = 16, 8 draws, 17 scales from 0.1 to 1000, one torch thread): about 15 s on 2 shared cores.

    python -m simulations.attention_lipschitz [--tokens 16] [--d 16] [--draws 8] [--method dense] [--out results/attention_lipschitz]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hessian.experiments.lipschitz import (
    LipschitzConfig,
    format_slopes,
    load_lipschitz,
    plot_lipschitz,
    run_lipschitz,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--tokens", type=int, default=16, help="L, number of tokens")
    p.add_argument("--d", type=int, default=16, help="token width (d_K = d_V = d)")
    p.add_argument("--draws", type=int, default=8, help="random draws of weights and tokens")
    p.add_argument("--s-min", type=float, default=0.1)
    p.add_argument("--s-max", type=float, default=1000.0)
    p.add_argument("--num-scales", type=int, default=17)
    p.add_argument("--s-fit", type=float, default=100.0, help="fit the exponents over s >= s_fit")
    p.add_argument("--eps", type=float, default=1e-5, help="LayerNorm epsilon")
    p.add_argument("--method", choices=("dense", "lanczos"), default="dense")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (speed only; one is fastest for these small matrices)"
    )
    p.add_argument("--out", type=Path, default=Path("results/attention_lipschitz"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> LipschitzConfig:
    return LipschitzConfig(
        L=args.tokens,
        d=args.d,
        draws=args.draws,
        s_min=args.s_min,
        s_max=args.s_max,
        num_scales=args.num_scales,
        s_fit=args.s_fit,
        eps=args.eps,
        method=args.method,
        seed=args.seed,
    )


def main(argv=None) -> Path:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = config_from_args(args)
    path = run_lipschitz(config, args.out / f"{config.name()}.h5", progress=not args.no_progress)
    res = load_lipschitz(path)
    png = plot_lipschitz(path)
    rows = res.slopes()
    table = format_slopes(rows)
    path.with_name(path.stem + "_slopes.json").write_text(json.dumps(rows, indent=1))
    print(
        f"{config.name()}: {res.seconds:.1f} s of Jacobian computation\nlarge-s exponents of ||dF/dX||_2 ~ s^p (s >= {config.s_fit:g}):\n{table}"
    )
    print(f"saved {path}, {png} and {path.stem}_slopes.json")
    return path


if __name__ == "__main__":
    main()
