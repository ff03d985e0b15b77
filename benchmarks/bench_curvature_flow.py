"""Time ``hessian.along_trajectory`` on the issue's setting: 301 frames x 64 systems, n = 32, d = 8 (P = 192).

    python benchmarks/bench_curvature_flow.py [--repeats 3]

Prints the minimum over repeats (the machine is shared: the minimum is the least disturbed run) of the
whole call, with and without the exact eigenvalues, and the frames (x systems) per second; also the CPU time
of the process (``time.process_time``), which on oversubscribed cores is closer to what an idle core takes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import particles
from hessian import along_trajectory


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--systems", type=int, default=64)
    p.add_argument("--loss", default="target")
    args = p.parse_args(argv)
    x0 = np.stack([particles.sample_sphere(32, 8, seed=s) for s in range(args.systems)])
    t = time.perf_counter()
    traj = particles.simulate(x0, beta=1.0, t_max=30.0, dt=0.1)
    print(
        f"simulate: {time.perf_counter() - t:.2f} s, {len(traj.ts)} frames x {args.systems} systems, n = 32, d = 8, "
        "along_trajectory runs torch with one intra-op thread"
    )
    configs = len(traj.ts) * args.systems
    for eig in (True, False):
        times, cpu = [], []
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            along_trajectory(traj, loss=args.loss, eigenvalues=eig)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        best, best_cpu = min(times), min(cpu)
        print(
            f"along_trajectory(loss={args.loss!r}, eigenvalues={eig}): wall min {best:.2f} s over {args.repeats} "
            f"(all: {', '.join(f'{x:.1f}' for x in times)}), CPU min {best_cpu:.2f} s; "
            f"{len(traj.ts) / best:.1f} frames/s wall ({configs / best:.0f} configurations/s), "
            f"{len(traj.ts) / best_cpu:.1f} frames/s CPU",
            flush=True,
        )


if __name__ == "__main__":
    main()
