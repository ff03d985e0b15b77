"""Hessian spectrum during training: the small pre-LN transformer learns 5-digit addition, curvature at checkpoints.

Adam on fresh addition batches (cross-entropy on the answer digits, float64). At every checkpoint, on a fixed
evaluation batch, the exact Hessian of the whole model is probed with Hessian-vector products: top-k and
smallest eigenvalues (Lanczos), trace (Hutch++), spectral density (stochastic Lanczos quadrature) and the exact
Frobenius norms of the block's diagonal group blocks (Q, K, V, O, LN1, LN2, W1, b1, W2, b2). Checkpoints
(parameters, Adam state, curvature) go to HDF5 as they are reached, and an interrupted run resumes from the
last one; the figures are drawn from the file.

Quick default: d_model 8 (P = 1236), 600 steps, a checkpoint every 100 (7 curvature evaluations: about
3 minutes on an idle 2-core machine, 11 minutes measured under a load of 7).
``--full``: d_model 16, d_mlp 64, 3000 steps, batch 64, a checkpoint every 250, top 10 eigenvalues,
8 x 50 SLQ.

    python -m simulations.training_curvature [--full] [--steps 600] [--out results/training_curvature]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hessian.training import TrainingConfig, load_training_curvature, plot_training_curvature, run_training_curvature


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="d_model 16, 3000 steps, batch 64, top 10, 8 x 50 SLQ")
    p.add_argument("--d-model", type=int, default=None, help="default 8; --full: 16")
    p.add_argument("--d-mlp", type=int, default=None, help="default 4 d_model")
    p.add_argument("--steps", type=int, default=None, help="default 600; --full: 3000")
    p.add_argument("--checkpoint-every", type=int, default=None, help="default 100; --full: 250")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 32; --full: 64)")
    p.add_argument("--eval-batch", type=int, default=None, help="curvature batch (default 32; --full: 64)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--top-k", type=int, default=None, help="default 5; --full: 10")
    p.add_argument("--norm", choices=("pre", "none"), default="pre")
    p.add_argument("--threads", type=int, default=None, help="torch threads (speed only)")
    p.add_argument("--out", type=Path, default=Path("results/training_curvature"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    d = args.d_model or (16 if args.full else 8)
    full = args.full
    return TrainingConfig(
        d_model=d,
        d_mlp=args.d_mlp or 4 * d,
        layer_norm=args.norm == "pre",
        steps=args.steps or (3000 if full else 600),
        checkpoint_every=args.checkpoint_every or (250 if full else 100),
        batch=args.batch or (64 if full else 32),
        eval_batch=args.eval_batch or (64 if full else 32),
        lr=args.lr,
        top_k=args.top_k or (10 if full else 5),
        trace_matvecs=99 if full else 60,
        slq_probes=8 if full else 3,
        slq_steps=50 if full else 25,
    )


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    path = run_training_curvature(config, args.out / f"{config.name()}.h5", progress=not args.no_progress)
    res = load_training_curvature(path)
    png_spectrum, png_density = plot_training_curvature(path)
    lines = [config.name(), f"P = {res.num_params} parameters, {res.seconds:.1f} s of curvature computation", ""]
    lines.append(
        f"{'step':>6s} {'eval loss':>9s} {'lambda_1':>9s} {'lambda_k':>9s} {'lambda_min':>10s} {'trace':>16s}  largest diagonal group block"
    )
    for c, s in enumerate(res.steps):
        g = int(np.argmax(res.block_norms[c]))
        lines.append(
            f"{s:6d} {res.loss[c]:9.4f} {res.top[c, 0]:9.3f} {res.top[c, -1]:9.3f} {res.bottom[c]:10.3f} {res.trace[c]:8.2f} +- {res.trace_se[c]:5.2f}  "
            f"{res.groups[g]} {res.block_norms[c, g]:.2e}"
        )
    summary = "\n".join(lines) + "\n"
    path.with_name(path.stem + "_summary.txt").write_text(summary)
    print(summary)
    print(f"saved {path}, {png_spectrum}, {png_density} and {path.stem}_summary.txt")
    return path


if __name__ == "__main__":
    main()
