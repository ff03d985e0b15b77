"""Spectra and conditioning of the attention Hessian blocks across model sizes (issue 11).

For d_model x depth x attention (softmax / linear), the reference transformer on 5-digit addition at its GPT-2
initialisation: Frobenius norms of H, H_o, H_f, trace, extreme eigenvalues, condition number over the numerical
range, rank and negative mass of the W_Q, W_K, W_V, W_O blocks of the last layer. Exact dense spectra up to
d_model 64 (P = 4096), Lanczos / Hutch++ / Hutchinson / SLQ above (the method of each number is in the file).
Each row goes to HDF5 as it finishes (a rerun resumes); the table and the figure are then made from the file.

Quick default: d_model 8, 16, 32 and 1-2 layers (about a minute or two on 2 cores).
``--full``: d_model 8..128 and 1-3 layers (tens of minutes to hours: d_model 128 is matrix-free).

    python -m simulations.size_sweep
    nice -n 10 python -m simulations.size_sweep --full
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hessian.experiments.size_sweep import (
    SizeSweepConfig,
    format_size_table,
    load_size_sweep,
    plot_size_sweep,
    run_size_sweep,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="d_model 8..128, 1-3 layers")
    p.add_argument("--d-models", type=int, nargs="+", default=None, help="default 8 16 32; --full: 8 16 32 64 128")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="default 1 2; --full: 1 2 3")
    p.add_argument("--attentions", nargs="+", choices=("softmax", "linear"), default=["softmax", "linear"])
    p.add_argument("--blocks", nargs="+", choices=("W_Q", "W_K", "W_V", "W_O"), default=["W_Q", "W_K", "W_V", "W_O"])
    p.add_argument("--all-layers", action="store_true", help="measure the blocks of every layer, not only the last")
    p.add_argument("--loss", choices=("ce", "mse"), default="ce")
    p.add_argument("--batch", type=int, default=64, help="addition sequences")
    p.add_argument("--dense-threshold", type=int, default=4096, help="largest block size P diagonalised densely")
    p.add_argument("--threads", type=int, default=None, help="torch threads (speed only)")
    p.add_argument("--out", type=Path, default=Path("results/size_sweep"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SizeSweepConfig:
    return SizeSweepConfig(
        d_models=tuple(args.d_models or ((8, 16, 32, 64, 128) if args.full else (8, 16, 32))),
        layers=tuple(args.layers or ((1, 2, 3) if args.full else (1, 2))),
        attentions=tuple(args.attentions),
        blocks=tuple(args.blocks),
        all_layers=args.all_layers,
        loss=args.loss,
        batch=args.batch,
        dense_threshold=args.dense_threshold,
    )


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    path = run_size_sweep(config, args.out / f"{config.name()}.h5", progress=not args.no_progress)
    png = plot_size_sweep(path)
    table = format_size_table(load_size_sweep(path))
    path.with_name(path.stem + "_table.txt").write_text(table + "\n")
    print(table)
    print(f"saved {path}, {png} and {path.stem}_table.txt")
    return path


if __name__ == "__main__":
    main()
