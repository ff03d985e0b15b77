"""Time of the whole 1-layer log-scale growth figure (20 sigmas x 20 repeats; H, H_o, H_f of W_Q and W_V).

Setting of the theory note §3: d_model = d_head = 128, d_mlp 512, batch 64, CE on the answer digits,
embeddings redrawn with std sigma at every point. Two methods, in one run, on the same parameter points:

* ours (``method="auto"``): the exact Kronecker-sum norms of ``hessian.block_norms``
  (standard error 0: exact up to rounding);
* reference: curvlinops' ``HessianLinearOperator`` and ``GGNLinearOperator`` (and their difference for
  -H_f) with ``hutchinson_squared_fro`` on 20 Rademacher probes per estimate, as the authors' notebook does.

Extrapolation: ours is timed on every sigma for ``--repeats`` repeats (default 2, i.e. 40 of the 400 points)
and scaled by 20 / repeats; the reference on ``--ref-points`` sigmas of repeat 0 and scaled to 400 points.
Per-point times do not depend on sigma (same products), which the per-point spread printed below shows.
At the reference points the benchmark also prints the actual relative error of each 20-probe estimate
against our exact value, and the relative standard error the 20 probes themselves report.

The float32 variant of ours is timed on the 20 sigmas of repeat 0, and its largest relative deviation
from the float64 norms is printed (it decides whether float32 is safe here).

A cross-check of the exact path at full size: at one point, Hutch++ with our own products (sketch 16,
64 probes) must agree with the exact norms within 4 of its standard errors.

    python benchmarks/bench_hessian_growth.py [--repeats 2] [--ref-points 3] [--threads N] [--dtype float64]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
import torch

from hessian.block_norms import hutchpp_split_norms
from hessian.interop import FunctionalModule, LossModule
from hessian.kinds import KINDS
from hessian.problem import CurvatureProblem
from simulations._growth_points import GrowthConfig, build, measure_point, point_params


def reference_point(config, setup, params, seed):
    """The authors' protocol with curvlinops: 20-probe Hutchinson for H, GGN and GGN - H, per block."""
    from curvlinops import GGNLinearOperator, HessianLinearOperator, hutchinson_squared_fro

    torch.manual_seed(seed)  # curvlinops draws its probes from the global torch RNG
    module = FunctionalModule(setup.model, params)
    loss = LossModule(setup.loss)
    data = [(setup.tokens, setup.target)]
    norms, rse = np.zeros((2, 3)), np.zeros((2, 3))
    for b, block in enumerate(("Q", "V")):
        p = [module.parameter(f"blocks.0.attn.W_{block}")]
        H = HessianLinearOperator(module, loss, p, data, check_deterministic=False)
        G = GGNLinearOperator(module, loss, p, data, check_deterministic=False)
        for q, op in enumerate((H, G, G - H)):
            # per-probe squared norms (hutchinson_squared_fro averages them; we keep them for the stderr)
            samples = torch.stack([hutchinson_squared_fro(op, 1) for _ in range(20)])
            sq = samples.mean()
            norms[b, q] = float(sq.sqrt())
            rse[b, q] = float(samples.std() / np.sqrt(20) / (2 * sq)) if sq > 0 else 0.0
    return norms, rse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="repeats of ours to time (of 20)")
    parser.add_argument("--ref-points", type=int, default=3, help="sigma points for the curvlinops reference")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}"
    )
    config = GrowthConfig(dtype=args.dtype)  # the paper's 1-layer softmax CE setting, log grid, 20 x 20
    setup = build(config)
    S = config.num_sigmas

    # ours: every sigma, args.repeats repeats
    times, exact = [], {}
    measure_point(config, setup, point_params(config, setup, 0, 0))  # warm-up
    for r in range(args.repeats):
        for k in range(S):
            params = point_params(config, setup, r, k)
            t0 = time.perf_counter()
            norms, stderr, _ = measure_point(config, setup, params)
            times.append(time.perf_counter() - t0)
            exact[(r, k)] = norms[0]
            assert np.all(stderr == 0)
    times = np.array(times)
    ours_total = times.sum() * config.repeats / args.repeats
    print(
        f"\nours (exact Kronecker sums, {args.dtype}): {times.mean():.3f} s per point (min {times.min():.3f}, max "
        f"{times.max():.3f}) "
        f"over {len(times)} points -> whole figure (400 points) ~ {ours_total:.0f} s = {ours_total / 60:.1f} min; "
        "relative standard error 0 (exact)"
    )

    # float32 on the same points (drawn in float64 and cast): speed and deviation from float64
    if args.dtype == "float64":
        c32 = dataclasses.replace(config, dtype="float32")
        t32, dev = [], 0.0
        for k in range(S):
            params = point_params(c32, setup, 0, k)
            t0 = time.perf_counter()
            n32, _, _ = measure_point(c32, setup, params)
            t32.append(time.perf_counter() - t0)
            want = exact[(0, k)]
            dev = max(dev, float(np.max(np.abs(n32[0] - want)[want > 0] / want[want > 0])))
        print(
            f"ours in float32: {np.mean(t32):.3f} s per point over {S} points -> whole figure ~ "
            f"{np.mean(t32) * 400:.0f} s; "
            f"largest relative deviation from float64 over the grid: {dev:.1e}"
        )

    # reference: a few sigmas of repeat 0 (float64: the same parameter points as ours)
    ks = np.linspace(0, S - 1, args.ref_points).round().astype(int)
    ref_times, errors, rses = [], [], []
    for k in ks:
        params = point_params(config, setup, 0, int(k))
        t0 = time.perf_counter()
        norms, rse = reference_point(config, setup, params, seed=int(k))
        ref_times.append(time.perf_counter() - t0)
        want = exact[(0, int(k))]
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.where(want > 0, np.abs(norms - want) / want, np.nan)
        errors.append(err)
        rses.append(np.where(want > 0, rse, np.nan))
        print(f"  reference at sigma = {config.sigmas[k]:.3g}: {ref_times[-1]:.1f} s")
    ref_total = np.mean(ref_times) * S * config.repeats
    print(
        f"reference (curvlinops, 20-probe Hutchinson x (H, GGN, GGN - H) x (Q, V)): {np.mean(ref_times):.2f} s per "
        "point "
        f"-> whole figure ~ {ref_total:.0f} s = {ref_total / 60:.1f} min"
    )
    print(f"speed-up: {ref_total / ours_total:.1f}x")
    errors, rses = np.array(errors), np.array(rses)
    print(
        "\nreference accuracy at its points (relative to our exact norms): block kind  mean |error|  max |error|  "
        "mean reported rse"
    )
    for b, block in enumerate(("Q", "V")):
        for q, kind in enumerate(KINDS):
            e, s = errors[:, b, q], rses[:, b, q]
            if np.all(np.isnan(e)):
                print(f"  W_{block} {kind:4s}  identically 0 (exact)")
                continue
            print(f"  W_{block} {kind:4s}  {np.nanmean(e):12.3f} {np.nanmax(e):12.3f} {np.nanmean(s):12.3f}")

    # cross-check of the exact path at full size against an independent stochastic estimate
    k = S // 2
    params = point_params(config, setup, 0, k)
    print(f"\ncross-check at sigma = {config.sigmas[k]:.3g}: Hutch++ (our products, sketch 16, 64 probes) vs exact")
    for b, block in enumerate(("Q", "V")):
        name = [f"blocks.0.attn.W_{block}"]
        problem = CurvatureProblem(setup.model, setup.loss, params, setup.tokens, setup.target, name)
        # the (k, P) -> (k, P) torch products of the operators, all k vectors in one vmap call
        hvp = problem.curvature("H", chunk_size=None).operator().torch_matmat
        ggnvp = problem.curvature("H_o", chunk_size=None).operator().torch_matmat
        est = hutchpp_split_norms(hvp, ggnvp, problem.dim, sketch=16, probes=64, seed=0, dtype=torch.float64)
        want = exact[(0, k)][b]
        for q, kind in enumerate(KINDS):
            if want[q] == 0:
                # identically zero block: only rounding is left, measure it against the H norm
                print(
                    f"  W_{block} {kind:4s} exact 0             Hutch++ {est.value[q]:.1e} (rounding, "
                    f"{est.value[q] / want[0]:.0e} of ||H||)"
                )
                continue
            z = (est.value[q] - want[q]) / est.stderr[q] if est.stderr[q] > 0 else float("nan")
            print(
                f"  W_{block} {kind:4s} exact {want[q]:.6e}  Hutch++ {est.value[q]:.6e} +- {est.stderr[q]:.1e}  (z "
                f"= {z:+.2f})"
            )


if __name__ == "__main__":
    main()
