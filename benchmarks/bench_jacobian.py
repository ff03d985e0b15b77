"""Spectral norm of the input Jacobian dF/dX of one softmax head: matrix-free Lanczos against a dense SVD.

Setting: ``SelfAttention(d_model=d)`` (one head, d_K = d_V = d, weights ~ N(0, 1/d)), L tokens ~ N(0, 1),
float64; default L = 128, d = 64, so J = dF/dX is (L d) x (L d) = 8192 x 8192 (512 MiB). In one run:

* matrix-free: ``jacobian_operator(...).spectral_norm()``, Lanczos (ARPACK) on J^T J with one jvp and one vjp per
  product, J never formed;
* dense: the exact J from the closed form (``attention_jacobians``), then LAPACK singular values;
* the relative agreement of the two norms;
* building the full Jacobian (X, W_Q, W_K, W_V blocks): closed form against ``torch.func.jacrev`` on a plain
  re-implementation of the layer, and ``hessian.jacobians.jacobian`` for the X block (unit-vector vjps).

Wall and CPU time of a single run each, after one warm-up product of the operator (the dense steps take minutes at
the default size; ``--repeats`` for more).
``python benchmarks/bench_jacobian.py [--L 128] [--d 64] [--quick] [--threads N] [--skip-jacrev]``.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
from torch.func import jacrev

from hessian.closed_form.attention_jacobians import attention_jacobians
from hessian.jacobians import jacobian, jacobian_operator
from hessian.models import SelfAttention


def timed(fn, repeats: int = 1):
    """(result of the last call, best wall seconds, CPU seconds of that call)."""
    best = (math.inf, math.inf)
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
    return out, *best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=128, help="tokens")
    p.add_argument("--d", type=int, default=64, help="width (d_K = d_V = d)")
    p.add_argument("--quick", action="store_true", help="L = 32, d = 16: a check that everything runs")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--skip-jacrev", action="store_true", help="skip the torch.func jacrev timing of the full Jacobian")
    args = p.parse_args()
    L, d = (32, 16) if args.quick else (args.L, args.d)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; torch threads "
        f"{torch.get_num_threads()}"
    )
    layer = SelfAttention(d_model=d)
    params = layer.init(seed=0)
    X = torch.randn(L, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    W_Q, W_K, W_V = (params[n][0] for n in ("W_Q", "W_K", "W_V"))
    n = L * d
    print(f"L = {L}, d = {d}: J = dF/dX is {n} x {n} ({n * n * 8 / 2**20:.0f} MiB in float64)")

    op = jacobian_operator(layer, params, X)
    # warm-up: the first jvp/vjp of a process traces functorch's rules (seconds, once)
    op @ torch.ones(n, dtype=torch.float64).numpy(), op.T @ torch.ones(n, dtype=torch.float64).numpy()
    est, w_mf, c_mf = timed(lambda: op.spectral_norm(tol=1e-12), args.repeats)
    print(
        f"matrix-free Lanczos on J^T J : {w_mf:8.2f} s wall, {c_mf:8.2f} s CPU, {est.num_matvecs} products; ||J||_2 "
        f"= {est.value:.12g} (bound {est.stderr:.1e})",
        flush=True,
    )
    J, w_cf, c_cf = timed(lambda: attention_jacobians(X, W_Q, W_K, W_V)["X"], args.repeats)
    s, w_svd, c_svd = timed(lambda: torch.linalg.svdvals(J)[0].item(), args.repeats)
    J = None  # 8 n^2 bytes: free before the full Jacobians
    print(
        f"dense: closed-form J + SVD   : {w_cf + w_svd:8.2f} s wall, {c_cf + c_svd:8.2f} s CPU (J {w_cf:.2f} s, SVD "
        f"{w_svd:.2f} s); ||J||_2 = {s:.12g}"
    )
    print(
        f"relative agreement           : {abs(est.value - s) / s:.2e};  dense / matrix-free wall time: "
        f"{(w_cf + w_svd) / w_mf:.1f}x",
        flush=True,
    )

    full, w_all, c_all = timed(lambda: attention_jacobians(X, W_Q, W_K, W_V), args.repeats)
    print(f"full Jacobian (X, W_Q, W_K, W_V), closed form : {w_all:8.2f} s wall, {c_all:8.2f} s CPU")
    JX, w_lib, c_lib = timed(lambda: jacobian(layer, params, X, max_entries=n * n).matrix, args.repeats)
    err = ((JX - full["X"]).abs().max() / full["X"].abs().max()).item()
    print(
        f"X block, hessian.jacobian (vjps)              : {w_lib:8.2f} s wall, {c_lib:8.2f} s CPU; max rel. "
        f"difference to closed form {err:.1e}"
    )
    JX = None
    if not args.skip_jacrev:
        beta = 1 / math.sqrt(d)

        def F(X, W_Q, W_K, W_V):
            return torch.softmax(beta * X @ W_Q @ W_K.T @ X.T, dim=-1) @ X @ W_V

        ref, w_jr, c_jr = timed(lambda: jacrev(F, argnums=(0, 1, 2, 3), chunk_size=256)(X, W_Q, W_K, W_V), args.repeats)
        err = max(
            ((r.reshape(full[k].shape) - full[k]).abs().max() / full[k].abs().max()).item()
            for k, r in zip(("X", "W_Q", "W_K", "W_V"), ref)
        )
        print(
            f"full Jacobian, torch.func.jacrev (chunk 256)  : {w_jr:8.2f} s wall, {c_jr:8.2f} s CPU; jacrev / "
            f"closed form {w_jr / w_all:.1f}x; max rel. difference {err:.1e}"
        )


if __name__ == "__main__":
    main()
