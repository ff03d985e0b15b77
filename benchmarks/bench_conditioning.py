"""Extreme eigenvalues of one attention block: dense LAPACK versus Lanczos, and what the shift buys.

Setting of ``simulations/size_sweep.py``: reference transformer (5-digit addition, batch 64, CE, GPT-2 init),
last layer's W_Q block of H and W_V block of H_o (PSD, rank-deficient: its bottom end sits at 0). For each
d_model, three ways to get lambda_min and lambda_max:

* dense: the block applied to the identity (P products) and ``numpy.linalg.eigvalsh``;
* ours: ``extreme_eigenvalues(..., dense_threshold=0)``: ARPACK on A +- |lambda|_max I, accuracy relative to
  |lambda|_max;
* plain: ``eigsh(which="BE")`` on A itself, whose stopping rule ``||r|| <= tol |theta|`` is relative to an end
  that may be ~0 (capped at ``--maxiter`` restarts; "no conv." when it does not converge). The bottom of a
  PSD block is a cluster at 0 and can take thousands of products even shifted (ours capped at ``--maxiter-ours``).

Printed: seconds, products, and the largest deviation from the dense values relative to |lambda|_max.

    python benchmarks/bench_conditioning.py [--d-models 16 32 64] [--tol 1e-8] [--threads N]
    python benchmarks/bench_conditioning.py --small        # d_model 8 and 16 only: a check that it runs
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from hessian.conditioning import extreme_eigenvalues
from hessian.problem import CurvatureProblem
from simulations.size_sweep import SizeSweepConfig, row_setup


def plain_both_ends(op, tol: float, maxiter: int) -> tuple[np.ndarray | None, int]:
    count = [0]

    def mv(X):
        X = np.asarray(X).reshape(op.shape[0], -1)
        count[0] += X.shape[1]
        return op.matmat(X)

    lin = LinearOperator(op.shape, matvec=lambda x: mv(x)[:, 0], matmat=mv, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(op.shape[0])
    try:
        vals = np.sort(eigsh(lin, k=2, which="BE", tol=tol, v0=v0, maxiter=maxiter, return_eigenvectors=False))
    except ArpackNoConvergence:
        return None, count[0]
    return vals, count[0]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--d-models", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--small", action="store_true", help="d_model 8 and 16 only")
    p.add_argument("--tol", type=float, default=1e-8)
    p.add_argument("--maxiter", type=int, default=30, help="ARPACK restarts of the plain run")
    p.add_argument("--maxiter-ours", type=int, default=200, help="ARPACK restarts per run of ours")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    d_models = [8, 16] if args.small else args.d_models
    config = SizeSweepConfig()
    print(
        f"{'d':>4} {'block':>8} {'P':>6} | {'dense s':>8} | {'ours s':>7} {'prod':>6} {'dev':>8} | {'plain s':>7} "
        f"{'prod':>6} {'dev':>8}"
    )
    for d in d_models:
        setup, params = row_setup(config, d, 1, "softmax")
        data = (setup.model, setup.loss, params, setup.tokens, setup.target)
        for label, kind, block in (("H  W_Q", "H", "blocks.0.attn.W_Q"), ("H_o W_V", "H_o", "blocks.0.attn.W_V")):
            op = CurvatureProblem(*data, [block]).curvature(kind).operator()
            P = op.shape[0]
            t0 = time.perf_counter()
            M = op.matmat(np.eye(P))
            lam = np.linalg.eigvalsh(0.5 * (M + M.T))
            t_dense = time.perf_counter() - t0
            ref, scale = np.array([lam[0], lam[-1]]), np.abs(lam).max()
            t0 = time.perf_counter()
            try:
                ours = extreme_eigenvalues(op, 1, "both", dense_threshold=0, tol=args.tol, maxiter=args.maxiter_ours)
                dev_ours, n_ours = f"{np.abs(ours.values - ref).max() / scale:.1e}", ours.num_matvecs
            except ArpackNoConvergence:
                dev_ours, n_ours = "no conv.", -1
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            plain, n_plain = plain_both_ends(op, args.tol, args.maxiter)
            t_plain = time.perf_counter() - t0
            dev_plain = "no conv." if plain is None else f"{np.abs(plain - ref).max() / scale:.1e}"
            print(
                f"{d:>4} {label:>8} {P:>6} | {t_dense:>8.2f} | {t_ours:>7.2f} {n_ours:>6} {dev_ours:>8} | "
                f"{t_plain:>7.2f} {n_plain:>6} {dev_plain:>8}"
            )


if __name__ == "__main__":
    main()
