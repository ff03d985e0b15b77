"""Block heterogeneity of the Transformer Hessian at initialisation (Ormaniec, Dangel & Singh, 2025, Figs. 1 and 4).

Heatmap of log10 |H| for the whole 1-layer transformer (d_model = d_head = 16, d_mlp 64, 3836 parameters,
exact dense Hessian) with block boundaries, and histograms of the |entries| of the W_Q and W_V blocks for
softmax versus linear attention. The paper's setting is small, so the default is the paper's setting
(``--full`` is accepted and changes nothing); about a minute on 2 cores. Results go to HDF5 first (a rerun
with the same settings reuses them), the two PNGs are drawn from that file, next to it.

    python -m simulations.hessian_heterogeneity [--d-model 16] [--out results/hessian_heterogeneity]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hessian.experiments.figures import plot_heatmap, plot_histograms
from hessian.experiments.heterogeneity import HeterogeneityConfig, run_heterogeneity
from hessian.experiments.results import load_heterogeneity


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="the paper's setting (already the default)")
    p.add_argument("--d-model", type=int, default=16)
    p.add_argument("--d-mlp", type=int, default=None, help="default 4 d_model")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--batch", type=int, default=64, help="sequences for the heatmap")
    p.add_argument("--threads", type=int, default=None, help="torch threads (speed only)")
    p.add_argument("--out", type=Path, default=Path("results/hessian_heterogeneity"))
    return p.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = HeterogeneityConfig(
        d_model=args.d_model, d_mlp=args.d_mlp or 4 * args.d_model, seed=args.seed, batch=args.batch
    )
    path = run_heterogeneity(
        config, args.out / f"heterogeneity_d={config.d_model}_seed={config.seed}_batch={config.batch}.h5"
    )
    heat, hist = plot_heatmap(path), plot_histograms(path)
    res = load_heterogeneity(path)
    H, b = res["hessian"], res["boundaries"]
    print("block   Frobenius norm of the diagonal block   median |entry|")
    for i, name in enumerate(res["names"]):
        B = H[b[i] : b[i + 1], b[i] : b[i + 1]]
        print(f"{name:22s} {np.linalg.norm(B):12.3e} {np.median(np.abs(B)):14.3e}")
    for attention, blocks in res["blocks"].items():
        q, v = (np.median(np.abs(blocks[k])) for k in ("Q", "V"))
        print(
            f"{attention:8s} attention, histogram batches: median |H_QQ| {q:.2e}, median |H_VV| {v:.2e}, ratio V/Q {v / q:.1e}"
        )
    print(f"saved {path}, {heat} and {hist}")
    return path


if __name__ == "__main__":
    main()
