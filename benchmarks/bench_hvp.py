"""Hessian-vector products per second for the W_Q block of the reference 1-layer transformer.

Reference setting (theory note §3.3-3.5): d_model = d_head = 128, d_mlp 512, 1 head, batch 64, context 18,
causal softmax attention, cross-entropy on the answer positions 11..16 against tokens 12..17, float32.
Times, in one run and on the same product H v with v in R^16384:

* ours, one vector per call (``Curvature.matvec``) and k vectors per call (``Curvature.matmat``, vmap);
* ours with ``Transformer(readout=(11, 17))``: the same numbers, computed only for the scored rows;
* curvlinops' ``HessianLinearOperator``, one vector and k vectors (its own vmap).

Each figure is the best of ``--repeats`` timings (minimum: the least disturbed run). Usage:
``python benchmarks/bench_hvp.py [--batch 32] [--repeats 5] [--dtype float32]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from hessian import CrossEntropyLoss, CurvatureProblem, Transformer
from hessian.interop import FunctionalModule, LossModule

BLOCK = "blocks.0.attn.W_Q"


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: first calls build the vjp graph caches and allocate
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="vectors per batched call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # other busy processes ruin multi-threaded timings: say so in the output
    print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    model = Transformer()
    params = model.init(seed=1234, dtype=dtype)
    tokens = torch.randint(0, 12, (64, 18), generator=torch.Generator().manual_seed(1234))
    loss = CrossEntropyLoss(positions=(11, 17), target_shift=1)
    short = dataclasses.replace(model, readout=(11, 17))
    answers = tokens[:, 12:18]

    gen = torch.Generator().manual_seed(0)
    P = params[BLOCK].numel()
    V = torch.randn(args.batch, P, generator=gen, dtype=dtype)
    v = V[0]

    H = CurvatureProblem(model, loss, params, tokens, tokens, [BLOCK], dtype=dtype).H
    H_short = CurvatureProblem(short, CrossEntropyLoss(), params, tokens, answers, [BLOCK], dtype=dtype).H

    from curvlinops import HessianLinearOperator

    module = FunctionalModule(model, params)
    op = HessianLinearOperator(
        module, LossModule(loss), [module.parameter(BLOCK)], [(tokens, tokens)], check_deterministic=False
    )
    VT = V.T.contiguous()

    # the four implementations compute the same product
    ref = (op @ VT).T
    for name, out in (("ours", H.matmat(VT).T), ("ours+readout", H_short.matmat(VT).T)):
        err = ((out - ref).norm() / ref.norm()).item()
        print(f"relative difference {name} vs curvlinops: {err:.2e}")

    k = args.batch
    rows = [
        ("ours, single (H.matvec)", 1 / best_time(lambda: H.matvec(v), args.repeats)),
        (f"ours, vmap batch {k} (chunks of 8)", k / best_time(lambda: H.matmat(VT), args.repeats)),
        ("ours+readout, single", 1 / best_time(lambda: H_short.matvec(v), args.repeats)),
        (f"ours+readout, vmap {k} (chunks 8)", k / best_time(lambda: H_short.matmat(VT), args.repeats)),
        ("curvlinops, single (op @ v)", 1 / best_time(lambda: op @ v, args.repeats)),
        (f"curvlinops, batch {k} (op @ V)", k / best_time(lambda: op @ VT, args.repeats)),
    ]
    print(
        f"\nW_Q block, P = {P}, {args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads, best of "
        f"{args.repeats}"
    )
    for name, rate in rows:
        print(f"{name:34s} {rate:8.1f} HVP/s")
    cl_single, cl_batch = rows[4][1], rows[5][1]
    print("\nratios (ours / curvlinops):")
    print(f"  batched vs curvlinops batched:            {rows[1][1] / cl_batch:5.2f}x")
    print(f"  batched+readout vs curvlinops batched:    {rows[3][1] / cl_batch:5.2f}x")
    print(f"  batched vs curvlinops single:             {rows[1][1] / cl_single:5.2f}x")
    print(f"  batched+readout vs curvlinops single:     {rows[3][1] / cl_single:5.2f}x")


if __name__ == "__main__":
    main()
