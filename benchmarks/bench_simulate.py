"""Euler steps of `particles.simulate` against a plain batched torch loop, in the same run.

Workload of the particle-solver issue: the authors' phase-diagram run for one beta (d = 2,
n = 32, 2048 systems, dt = 0.1, 300 Euler steps, SA, float64), then a grid over n and d.
Times are the minimum of several repeats (this machine is shared and noisy).

    python benchmarks/bench_simulate.py [--repeats 5] [--no-grid]
"""

import argparse
import time

import numba
import numpy as np
import torch

import particles
from particles import ClusteringEnsemble, beta_statistics

# The authors' phase-diagram code on this machine's CPU, whole run (Euler steps plus their
# statistics at 200 checkpoints), as measured for the particle-solver issue. It needs CUDA
# code paths and is not rerun here.
AUTHORS_US_PER_SYSTEM_STEP = 16.5


def torch_euler(x, beta, dt, n_steps):
    """The straightforward batched torch version of the authors' Euler scheme (SA, Q=K=V=I)."""
    for _ in range(n_steps):
        weights = torch.softmax(beta * x @ x.transpose(-1, -2), dim=-1)
        y = x + dt * (weights @ x)
        x = y / y.norm(dim=-1, keepdim=True)
    return x


def best_times(fns, repeats):
    """The minimum time of each function over ``repeats`` rounds; the functions alternate
    within a round, so a slow spell of the machine hits them alike."""
    for fn in fns:
        fn()  # warm-up: compilation, caches, thread pools
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [min(spent) for spent in times]


def best_time(fn, repeats):
    return best_times([fn], repeats)[0]


def compare(batch, n, d, n_steps, repeats, beta=5.0, dt=0.1):
    x0 = particles.sample_sphere(n, d, batch=batch, seed=0)
    t_max = n_steps * dt
    xt = torch.from_numpy(x0)
    ours, theirs = best_times(
        [
            lambda: particles.simulate(x0, beta=beta, t_max=t_max, dt=dt, save_every=n_steps),
            lambda: torch_euler(xt, beta, dt, n_steps),
        ],
        repeats,
    )
    # Same scheme, same start: the two implementations must agree.
    a = particles.simulate(x0, beta=beta, t_max=t_max, dt=dt, save_every=n_steps).final
    b = torch_euler(xt, beta, dt, n_steps).numpy()
    per = 1e6 / (batch * n_steps)
    return ours * per, theirs * per, float(np.abs(a - b).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-grid", action="store_true")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numba {numba.__version__} ({numba.get_num_threads()} threads)"
    )

    ours, theirs, diff = compare(2048, 32, 2, 300, args.repeats)
    print("\nAuthors' workload: d=2, n=32, 2048 systems, dt=0.1, 300 Euler steps, SA, float64")
    print(f"  simulate (Euler steps only): {ours:7.3f} us per system-step")
    print(f"  torch batched Euler loop:    {theirs:7.3f} us per system-step")
    print(f"  ratio torch / simulate:      {theirs / ours:7.2f}x   (max |difference| {diff:.1e})")

    ensemble = ClusteringEnsemble(batch=2048, checkpoints=200)
    setting = best_time(lambda: beta_statistics(5.0, ensemble), args.repeats) * 1e6 / (2048 * 300)
    print("\nPhase-diagram setting: the same run plus density and cluster counts at 200 checkpoints")
    print(f"  simulate + statistics:       {setting:7.3f} us per system-step")
    print(f"  authors' whole run (quoted): {AUTHORS_US_PER_SYSTEM_STEP:7.3f} us per system-step")
    print(f"  ratio:                       {AUTHORS_US_PER_SYSTEM_STEP / setting:7.2f}x")

    if args.no_grid:
        return
    print("\nGrid (us per system-step; steps chosen so that each run takes ~0.1-1 s)")
    print(f"{'n':>6} {'d':>5} {'batch':>6} {'steps':>6} {'simulate':>10} {'torch':>10} {'ratio':>7} {'max diff':>9}")
    for n in (32, 256, 2048):
        for d in (2, 3, 64, 512):
            batch = max(1, 65536 // (n * n))
            n_steps = max(3, min(100, int(2e9 / (batch * n * n * max(d, 16)))))
            ours, theirs, diff = compare(batch, n, d, n_steps, max(2, args.repeats // 2))
            print(
                f"{n:>6} {d:>5} {batch:>6} {n_steps:>6} {ours:>10.2f} {theirs:>10.2f} "
                f"{theirs / ours:>6.2f}x {diff:>9.1e}"
            )


if __name__ == "__main__":
    main()
