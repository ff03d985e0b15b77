"""Wall time of the authors' full default phase diagram (d = 2, n = 32, 2048 systems,
90 betas in [0.1, 9], t_max = 30, dt = 0.1, 200 checkpoints, SA) on this machine.

    python benchmarks/bench_phase_diagram.py [--betas 90]
"""

import argparse
import time

import numpy as np

from particles import ClusteringEnsemble, beta_statistics, phase_diagram


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--betas", type=int, default=90)
    args = parser.parse_args()
    betas = tuple(np.linspace(0.1, 9.0, args.betas))
    beta_statistics(1.0, ClusteringEnsemble(batch=16))  # compile / load caches
    start = time.perf_counter()
    result = phase_diagram(betas, progress=True)
    wall = time.perf_counter() - start
    print(
        f"{args.betas} betas x 2048 systems x 300 steps: {wall:.1f} s "
        f"({wall / args.betas:.2f} s per beta; target: full diagram under 60 s)"
    )
    for b in (0, len(betas) // 9, len(betas) // 3, -1):
        print(f"  beta = {result.betas[b]:.2f}: final density {result.density[b, -1]:.3f}")


if __name__ == "__main__":
    main()
