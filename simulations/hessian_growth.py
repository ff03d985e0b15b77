"""Growth of the self-attention (or MLP) Hessian blocks with the embedding scale sigma.

Ormaniec, Dangel & Singh (2025), theory note §3: for every sigma of the grid the token and position
embeddings are redrawn ~ N(0, sigma^2) and the Frobenius norms of the W_Q and W_V blocks of H, H_o and H_f
are measured for every layer (exactly for the last attention layer and for MLP layers, by Hutch++ below
the last attention layer). Every (sigma, repeat) point goes to HDF5 as it finishes (a rerun resumes); the
figure (mean +- s.e.m. over repeats, log-log, theory guide lines sigma^p) and the table of fitted slopes
are then made from the file, next to it.

Quick default: d_model 32, 12 sigmas, 3 repeats (seconds for one layer; a few minutes for deeper models,
whose lower layers use Hutch++). ``--full``: the paper's d_model 128, d_mlp 512, 20 repeats, batch 64,
20 sigmas (the 1-layer figure takes about 3-10 minutes on 2 shared cores; see benchmarks/bench_hessian_growth.py).

    python -m simulations.hessian_growth --full                              # 1 layer, softmax, CE
    python -m simulations.hessian_growth --full --layers 3                   # depth
    python -m simulations.hessian_growth --full --norm pre                   # pre-LayerNorm
    python -m simulations.hessian_growth --full --attention linear --layers 2  # MSE, residual 0, log_short
    python -m simulations.hessian_growth --full --model mlp --layers 4       # MSE, no activations
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hessian.experiments import GrowthConfig, format_slope_table, run_growth, slope_table
from hessian.experiments.figures import plot_growth
from hessian.experiments.results import load_growth


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="paper scale: d_model 128, d_mlp 512, 20 repeats")
    p.add_argument("--model", choices=("transformer", "mlp"), default="transformer")
    p.add_argument("--layers", type=int, default=1, help="depth (1..5 in the paper)")
    p.add_argument(
        "--grid",
        choices=("log", "log_short", "linear", "linear_short"),
        default=None,
        help="sigma grid (default: log; log_short for linear attention)",
    )
    p.add_argument("--num-sigmas", type=int, default=None, help="default 12; --full: 20")
    p.add_argument("--norm", choices=("none", "pre"), default="none", help="pre-LayerNorm or none")
    p.add_argument("--attention", choices=("softmax", "linear"), default="softmax")
    p.add_argument(
        "--residual-scaling",
        type=float,
        default=None,
        help="r in resid_mid = r resid_pre + attn_out (default 1; 0 for linear attention)",
    )
    p.add_argument(
        "--loss",
        choices=("ce", "mse"),
        default=None,
        help="default: ce for softmax attention, mse for linear attention and the MLP",
    )
    p.add_argument("--repeats", type=int, default=None, help="fresh model seeds (default 3; --full: 20)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--d-model", type=int, default=None, help="default 32; --full: 128")
    p.add_argument("--d-mlp", type=int, default=None, help="default 4 d_model")
    p.add_argument(
        "--embedding",
        choices=("fresh", "rescaled"),
        default="fresh",
        help="redraw the embeddings at every sigma, or rescale one draw",
    )
    p.add_argument("--method", choices=("auto", "hutchpp", "hutchinson"), default="auto")
    p.add_argument("--probes", type=int, default=16, help="Hutchinson probes per block without an exact path")
    p.add_argument("--sketch", type=int, default=8, help="Hutch++ sketch columns")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--sigma-max", type=float, default=1.0, help="upper end of the small-sigma slope fit")
    p.add_argument("--threads", type=int, default=None, help="torch threads (speed only; results do not depend on it)")
    p.add_argument("--out", type=Path, default=Path("results/hessian_growth"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> GrowthConfig:
    linear = args.attention == "linear"
    d_model = args.d_model or (128 if args.full else 32)
    return GrowthConfig(
        model=args.model,
        n_layers=args.layers,
        d_model=d_model,
        d_mlp=args.d_mlp or 4 * d_model,
        layer_norm=args.norm == "pre",
        attention=args.attention,
        residual_scaling=args.residual_scaling if args.residual_scaling is not None else (0.0 if linear else 1.0),
        loss=args.loss or ("mse" if linear or args.model == "mlp" else "ce"),
        grid=args.grid or ("log_short" if linear else "log"),
        num_sigmas=args.num_sigmas or (20 if args.full else 12),
        repeats=args.repeats or (20 if args.full else 3),
        batch=args.batch,
        embedding=args.embedding,
        method=args.method,
        probes=args.probes,
        sketch=args.sketch,
        dtype=args.dtype,
    )


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    path = run_growth(config, args.out / f"{config.name()}.h5", progress=not args.no_progress)
    results = load_growth(path)
    png = plot_growth(path)
    rows = slope_table(results, sigma_max=args.sigma_max)
    table = format_slope_table(rows, args.sigma_max)
    seconds = results.seconds
    summary = (
        f"{config.name()}\n{int(results.norms.shape[0] * results.norms.shape[1])} points, "
        f"{float(seconds.sum()):.1f} s of curvature computation ({float(seconds.mean()):.2f} s per point); "
        f"largest relative standard error of a single norm: {_max_rse(results):.2e}\n\n{table}\n"
    )
    path.with_name(path.stem + "_slopes.txt").write_text(summary)
    path.with_name(path.stem + "_slopes.json").write_text(json.dumps(rows, indent=1))
    print(summary)
    print(f"saved {path}, {png} and {path.stem}_slopes.txt")
    return path


def _max_rse(results) -> float:
    ok = results.norms > 0
    return float(np.max(results.stderr[ok] / results.norms[ok])) if ok.any() else 0.0


if __name__ == "__main__":
    main()
