"""Curvature of the full pre-LN Transformer block: group block map and growth with the embedding scale sigma.

One-layer pre-LN transformer (LN1 -> attention -> residual -> LN2 -> FFN -> residual, then ln_final and the
unembedding) on 5-digit addition, cross-entropy on the answer digits. For the groups Q, K, V, O, LN1, LN2, W1,
b1, W2, b2 the exact dense Hessian (float64 autograd) gives the Frobenius norm of every group-pair block of
H, H_o and H_f, at initialisation (heatmap with numbers) and for every sigma of the grid after redrawing the
token and position embeddings ~ N(0, sigma^2) (growth figure, slope table against the derived large-sigma
exponents). The LN2 and FFN blocks are also rebuilt from the closed forms (hessian.closed_form) and compared
with autograd. Points go to HDF5 as they finish (a rerun skips them); figures are drawn from the file.

Quick default: d_model 8, d_mlp 32, 16 sequences, 10 sigmas, 2 seeds (22 dense 840 x 840 splits: about two
minutes on an idle 2-core machine, 8 minutes measured under a load of 8).
``--full``: d_model 16, d_mlp 64 (the heterogeneity heatmap's model, 3216 block parameters), 64 sequences,
20 sigmas, 5 seeds (dense 3216 x 3216 Hessians; about an hour on 2 cores).

    python -m simulations.block_curvature [--full] [--norm none] [--out results/block_curvature]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hessian import dense_hessian
from hessian.block import (
    ZERO_RTOL,
    BlockConfig,
    addition_problem,
    assembled_feedforward_blocks,
    format_growth_table,
    growth_table,
    load_block_curvature,
    plot_block_growth,
    plot_block_map,
    run_block_curvature,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="d_model 16, d_mlp 64, batch 64, 20 sigmas, 5 seeds")
    p.add_argument("--d-model", type=int, default=None, help="default 8; --full: 16")
    p.add_argument("--d-mlp", type=int, default=None, help="default 4 d_model")
    p.add_argument("--batch", type=int, default=None, help="default 16; --full: 64")
    p.add_argument("--num-sigmas", type=int, default=None, help="default 10; --full: 20 (log grid 10^[-2, 1])")
    p.add_argument("--repeats", type=int, default=None, help="default 2; --full: 5")
    p.add_argument("--norm", choices=("pre", "none"), default="pre", help="pre-LN block or no LayerNorm")
    p.add_argument("--embedding", choices=("fresh", "rescaled"), default="fresh")
    p.add_argument("--threads", type=int, default=None, help="torch threads (speed only)")
    p.add_argument("--out", type=Path, default=Path("results/block_curvature"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> BlockConfig:
    d = args.d_model or (16 if args.full else 8)
    return BlockConfig(
        d_model=d,
        d_mlp=args.d_mlp or 4 * d,
        layer_norm=args.norm == "pre",
        batch=args.batch or (64 if args.full else 16),
        num_sigmas=args.num_sigmas or (20 if args.full else 10),
        repeats=args.repeats or (5 if args.full else 2),
        embedding=args.embedding,
    )


def assembly_error(config: BlockConfig) -> float:
    """Largest |closed form - autograd| over the LN2 and FFN blocks at initialisation (seed model_seed)."""
    model = config.model()
    params = model.init(seed=config.model_seed)
    tokens, target, loss = addition_problem(model, config.batch, seed=config.data_seed)
    blocks = assembled_feedforward_blocks(model, params, tokens, target, loss)
    names = sorted({a for a, _ in blocks}, key=list(params).index)
    H = dense_hessian(model, loss, params, tokens, target, names)
    return max(float((B - H.block(a, b)).abs().max()) for (a, b), B in blocks.items())


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    path = run_block_curvature(config, args.out / f"{config.name()}.h5", progress=not args.no_progress)
    res = load_block_curvature(path)
    png_map, png_growth = plot_block_map(path), plot_block_growth(path)
    rows = growth_table(res)
    init = np.nanmean(res.init, axis=0)
    G = len(res.groups)
    order = np.argsort(-np.diagonal(init[0]))
    lines = [config.name(), f"{res.seconds:.1f} s of Hessian computation", ""]
    lines.append(
        "diagonal blocks of H at initialisation, largest first: "
        + ", ".join(f"{res.groups[i]} {init[0, i, i]:.2e}" for i in order)
    )
    off = [(init[0, i, j], res.groups[i], res.groups[j]) for i in range(G) for j in range(i + 1, G)]
    off.sort(reverse=True)
    lines.append("largest off-diagonal group blocks of H: " + ", ".join(f"{a}-{b} {v:.2e}" for v, a, b in off[:5]))
    zeros = [
        f"{res.groups[i]}-{res.groups[j]}"
        for i in range(G)
        for j in range(i, G)
        if init[2, i, j] <= ZERO_RTOL * init[0, i, j]
    ]
    lines.append(
        f"group blocks with H_f = 0 up to round-off (<= {ZERO_RTOL:g} of the H block): "
        + (", ".join(zeros) if zeros else "none")
    )
    if config.layer_norm:
        lines.append(
            f"closed-form assembly of the LN2 and FFN blocks vs autograd: max abs deviation {assembly_error(config):.1e}"
        )
    lines += [
        "",
        "log-log slopes of the diagonal group blocks (mean over seeds) against sigma:",
        format_growth_table(rows),
    ]
    summary = "\n".join(lines) + "\n"
    path.with_name(path.stem + "_summary.txt").write_text(summary)
    path.with_name(path.stem + "_slopes.json").write_text(json.dumps(rows, indent=1))
    print(summary)
    print(f"saved {path}, {png_map}, {png_growth} and {path.stem}_summary.txt")
    return path


if __name__ == "__main__":
    main()
