"""Euler steps of `particles.simulate` against a plain batched torch Euler loop over the grid
n in {32, 256, 2048, 8192} x d in {2, 3, 64, 512}, float64 and float32, with peak memory.

Both run the authors' scheme (SA, Q = K = V = I, beta = 5, dt = 0.1) from the same start.
Each cell runs in fresh processes, so that one cell's memory never shows in another's:

- the timing process: one full-size ``simulate`` run first (its peak resident memory above
  the resident memory just before it is "ours MB"), then both implementations alternate
  within each round; the time is the minimum over the rounds (the machine is shared);
- a second process measures the torch loop's peak memory the same way (one step).

Before the baseline is read, each process runs its implementation once at n <= 520 tokens
(compilation, thread pools), so the memory is that of the computation, not of start-up.
Steps per cell shrink with the work, from 50 to 1 step for the largest cells, so the grid
takes a few minutes on 2 cores. Each ``simulate`` time holds the run's whole setup (checks,
the field, the span's basis where it pays) spread over its steps.

    python benchmarks/bench_grid.py [--repeats 5] [--dtypes float64 float32] [--big]

``--big`` adds n = 16384, d = 64 (float64; the torch loop needs about 4 GB there).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NS = (32, 256, 2048, 8192)
DS = (2, 3, 64, 512)
BETA, DT = 5.0, 0.1
# Aimed work per timed run, in units of batch * n^2 * (d + 16) (~0.03 ns each here, so
# about 0.1 s).
_TARGET_WORK = 4e9
_MAX_STEPS = 50


def cell_size(n, d):
    """(batch, steps) of a cell: batches fill small n, steps shrink with the work."""
    batch = max(1, 65536 // (n * n))
    work = batch * n * n * (d + 16)
    return batch, int(np.clip(round(_TARGET_WORK / work), 1, _MAX_STEPS))


def _rss_mb():
    """Resident memory now, MB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _start(n, d, dtype, batch):
    import particles

    return particles.sample_sphere(n, d, batch=batch, seed=0).astype(dtype)


def torch_euler(x, beta, dt, n_steps):
    """The straightforward batched torch loop of the authors' Euler scheme (SA, Q = K = V = I),
    as in ``bench_simulate.py``."""
    import torch

    for _ in range(n_steps):
        weights = torch.softmax(beta * x @ x.transpose(-1, -2), dim=-1)
        y = x + dt * (weights @ x)
        x = y / y.norm(dim=-1, keepdim=True)
    return x


def _ours(x0, n_steps):
    import particles

    return lambda: particles.simulate(x0, beta=BETA, t_max=n_steps * DT, dt=DT, save_every=n_steps).final


def _torch(x0, n_steps):
    import torch

    xt = torch.from_numpy(x0)
    return lambda: torch_euler(xt, BETA, DT, n_steps).numpy()


def _measure(run, n, d, dtype, batch, n_steps):
    """Warm-up at n <= 520, then one full-size run: (its result, seconds, peak extra MB)."""
    run(_start(min(n, 520), d, dtype, 1), 1)()
    x0 = _start(n, d, dtype, batch)
    fn = run(x0, n_steps)
    base = _rss_mb()
    start = time.perf_counter()
    out = fn()
    spent = time.perf_counter() - start
    return x0, out, spent, max(0.0, _peak_mb() - base)


def time_cell(n, d, dtype, repeats):
    """Child process: ours' memory, then alternating rounds of both; one JSON line. The
    runs before the rounds are the warm-up (the torch one at n <= 520 and full size)."""
    batch, n_steps = cell_size(n, d)
    x0, a, _, ours_mb = _measure(_ours, n, d, dtype, batch, n_steps)
    torch_run = _torch(x0, n_steps)
    _torch(_start(min(n, 520), d, dtype, 1), 1)()
    b = torch_run()
    fns, spent = [_ours(x0, n_steps), torch_run], [[], []]
    for _ in range(repeats):
        for fn, times in zip(fns, spent):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    per = 1e3 / n_steps
    diff = float(np.abs(a.astype(np.float64) - b).max())
    print(json.dumps(dict(ours_ms=min(spent[0]) * per, torch_ms=min(spent[1]) * per, ours_mb=ours_mb, diff=diff)))


def torch_memory(n, d, dtype):
    """Child process: the torch loop's peak extra memory over one step; one JSON line."""
    batch, _ = cell_size(n, d)
    print(json.dumps(dict(torch_mb=_measure(_torch, n, d, dtype, batch, 1)[3])))


def _child(*args):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")])),
    )
    done = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"cell {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cell(n, d, dtype, repeats):
    batch, n_steps = cell_size(n, d)
    timing = _child("--time-cell", n, d, dtype, repeats)
    memory = _child("--torch-memory", n, d, dtype)
    ratio = timing["torch_ms"] / timing["ours_ms"]
    print(
        f"{dtype:>8} {n:>6} {d:>4} {batch:>5} {n_steps:>5} {timing['ours_ms']:>11.2f} {timing['torch_ms']:>11.2f} "
        f"{ratio:>6.2f}x {timing['ours_mb']:>8.1f} {memory['torch_mb']:>9.1f} {timing['diff']:>8.1e}",
        flush=True,
    )
    return ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--ns", type=int, nargs="+", default=list(NS))
    parser.add_argument("--ds", type=int, nargs="+", default=list(DS))
    parser.add_argument("--big", action="store_true", help="add n = 16384, d = 64 (float64)")
    parser.add_argument("--time-cell", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--torch-memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_cell:
        n, d, dtype, repeats = args.time_cell
        return time_cell(int(n), int(d), dtype, int(repeats))
    if args.torch_memory:
        n, d, dtype = args.torch_memory
        return torch_memory(int(n), int(d), dtype)

    import torch

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), load {os.getloadavg()[0]:.2f}")
    print("ms per step (whole batch), minimum over rounds; MB: peak resident memory above the start of one run")
    print(
        f"{'dtype':>8} {'n':>6} {'d':>4} {'batch':>5} {'steps':>5} {'simulate ms':>11} {'torch ms':>11} "
        f"{'ratio':>7} {'ours MB':>8} {'torch MB':>9} {'max diff':>8}"
    )
    ratios = []
    for dtype in args.dtypes:
        for n in args.ns:
            for d in args.ds:
                # The largest cells: two rounds (a round of n = 8192, d = 512 takes a minute).
                repeats = args.repeats if n * n * d < 2048 * 2048 * 64 else 2
                ratios.append(run_cell(n, d, dtype, repeats))
    if args.big:
        run_cell(16384, 64, "float64", 1)
    print(f"lowest ratio on the grid: {min(ratios):.2f}x; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
