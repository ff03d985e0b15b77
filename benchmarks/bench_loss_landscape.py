"""Benchmark: a 51 x 51 loss landscape of the reference 1-layer transformer in float32.

The reference model (d_model = d_head = 128, d_mlp 512, one head, no LayerNorm, vocabulary 12, context 18)
on one batch of 64 addition sequences, the full forward pass (logits at all 18 positions, cross-entropy
on positions 11..16 as the authors' LossModule), on the plane of two random filter-normalised directions.
Printed: the FLOPs of one forward pass (counted analytically, checked against torch's FlopCounterMode),
the landscape's time and GFLOP/s for each chunk size on a slice of the grid and for the whole grid at the
best one, a 4096 x 4096 float32 matmul's GFLOP/s (best of several), and a plain Python loop that loads
each grid point's parameters and calls the model; then the ratios. Targets: whole grid under 20 s, at
least half the matmul GFLOP/s, never slower than the loop. Threads: torch's default.

    python benchmarks/bench_loss_landscape.py [--points 51] [--chunks 1,2,4,8,16,32] [--threads 2] [--loop-points 200]
    python benchmarks/bench_loss_landscape.py --quick      # a 15 x 15 grid, to check that it runs
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from hessian.addition import addition_data
from hessian.landscape import grid_coefficients, loss_landscape
from hessian.landscape_directions import random_filter_normalized_directions
from hessian.losses import CrossEntropyLoss
from hessian.models import Transformer


def forward_flops(model: Transformer, batch: int, T: int) -> int:
    """Multiply-add FLOPs (2 per multiply-add) of the matrix products of one forward pass.

    Per sequence, a layer with T tokens of keys and R query rows: K, V projections 2 * 2 T d d_head H; Q, O
    projections 2 * 2 R d d_head H; scores and pattern-times-values 2 * 2 R T d_head H; MLP 2 * 2 R d d_mlp;
    unembedding 2 R d V. R = T except in the last layer of a model with ``readout=(start, stop)``
    (R = stop - start, T = stop). Elementwise work (softmax, ReLU, adds, log-softmax) is below 1% and not counted.
    """
    d, dh, H = model.d_model, model.d_head, model.n_heads

    def layer(T: int, R: int) -> int:
        return 2 * 2 * T * d * dh * H + 2 * 2 * R * d * dh * H + 2 * 2 * R * T * dh * H + 2 * 2 * R * d * model.d_mlp

    T_last, R = (model.readout[1], model.readout[1] - model.readout[0]) if model.readout else (T, T)
    return batch * ((model.n_layers - 1) * layer(T_last, T_last) + layer(T_last, R) + 2 * R * d * model.d_vocab)


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=51, help="grid points per axis")
    p.add_argument("--chunks", default="1,2,4,8,16,32", help="chunk sizes tried on a slice of the grid")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--tune-rows", type=int, default=6, help="grid rows of the slice used to pick the chunk size")
    p.add_argument("--loop-points", type=int, default=200, help="grid points timed for the plain loop")
    p.add_argument(
        "--readout",
        action="store_true",
        help="the model computes only the 6 scored positions of the last layer (same losses, 2.3x fewer FLOPs)",
    )
    p.add_argument("--quick", action="store_true", help="15 x 15 grid, chunks 2,8, 30 loop points")
    args = p.parse_args(argv)
    if args.quick:
        args.points, args.chunks, args.loop_points, args.tune_rows = 15, "2,8", 30, 3
    chunks = [int(c) for c in args.chunks.split(",")]
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    tokens = addition_data(64, seed=1234)[0]
    if args.readout:  # logits of positions 11..16 only, scored against tokens 12..17: the same loss
        model = Transformer(readout=(11, 17))
        loss, target = CrossEntropyLoss(), tokens[:, 12:18]
    else:  # the reference sizes, full forward pass
        model = Transformer()
        loss, target = CrossEntropyLoss(positions=(11, 17), target_shift=1), tokens
    params = model.init(seed=1234, dtype=torch.float32)
    loss_fn = lambda q: loss(model(q, tokens), target)
    dirs = random_filter_normalized_directions(params, 0)
    axis = np.linspace(-1, 1, args.points)
    N = args.points**2

    flops = forward_flops(model, *tokens.shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        loss_fn(params)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: "
        f"{'readout of the 6 scored positions' if args.readout else 'full forward pass'}"
    )
    print(
        f"one forward pass: {flops / 1e9:.4f} GFLOP analytically, {counter.get_total_flops() / 1e9:.4f} GFLOP by "
        "FlopCounterMode"
    )
    print(f"grid {args.points} x {args.points} = {N} forward passes, {N * flops / 1e12:.3f} TFLOP")

    mm = matmul_gflops()
    print(f"float32 4096 x 4096 matmul: {mm:.1f} GFLOP/s (best of 5)")

    rows = axis[: args.tune_rows]
    loss_landscape(loss_fn, params, dirs, (rows[:1], axis[:8]), chunk_size=8)  # warm-up
    best_chunk, best_rate = chunks[0], 0.0
    for c in chunks:
        t0, c0 = time.perf_counter(), time.process_time()
        loss_landscape(loss_fn, params, dirs, (rows, axis), chunk_size=c)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = len(rows) * args.points
        rate = n * flops / dt / 1e9
        print(
            f"  chunk {c:3d}: {dt / n * 1e3:6.2f} ms/point, {rate:6.1f} GFLOP/s, CPU {cpu / n * 1e3:6.2f} ms/point  "
            f"({n} points)"
        )
        if rate > best_rate:
            best_chunk, best_rate = c, rate

    t0, c0 = time.perf_counter(), time.process_time()
    land = loss_landscape(loss_fn, params, dirs, (axis, axis), chunk_size=best_chunk)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rate = N * flops / dt / 1e9
    print(
        f"whole grid, chunk {best_chunk}: {dt:.2f} s (CPU {cpu:.2f} s), {dt / N * 1e3:.2f} ms/point, {rate:.1f} GFLOP/s"
    )
    auto = loss_landscape(loss_fn, params, dirs, (axis[:1], axis)).chunk_size
    print(f"(the default chunk size, from hessian.landscape.CACHE_BYTES, is {auto})")

    # the obvious implementation: one parameter dict per point, one model call per point
    coeffs = grid_coefficients((axis, axis))
    picks = np.linspace(0, N - 1, args.loop_points).round().astype(int)
    loop_values = np.empty(len(picks))
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for i, k in enumerate(picks):
            a, b = coeffs[k]
            point = {n: w + float(a) * dirs[0][n] + float(b) * dirs[1][n] for n, w in params.items()}
            loop_values[i] = float(loss_fn(point))
    loop_dt, loop_cpu = (time.perf_counter() - t0) / len(picks), (time.process_time() - c0) / len(picks)
    err = np.max(np.abs(loop_values - land.values.reshape(-1)[picks]) / np.abs(loop_values))
    print(
        f"plain loop: {loop_dt * 1e3:.2f} ms/point (CPU {loop_cpu * 1e3:.2f} ms/point; {len(picks)} points), "
        f"{loop_dt * N:.1f} s for the grid (extrapolated), "
        f"{flops / loop_dt / 1e9:.1f} GFLOP/s; max relative difference to the batched values {err:.1e}"
    )
    print(
        f"ratios: landscape / matmul GFLOP/s = {rate / mm:.2f} (target >= 0.5); loop time / landscape time = "
        f"{loop_dt * N / dt:.2f} (target >= 1); "
        f"grid time {dt:.1f} s (target < 20 s)"
    )


if __name__ == "__main__":
    main()
