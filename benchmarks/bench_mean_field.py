"""The mean-field solver and the particle side of the n-sweep.

1. ``particles.mean_field.solve`` on M = 4096 cells to t = 30 at beta = 5 (SA, the quick
   study's three-bump start), against the same SSP-RK3 driver with the MUSCL flux in plain
   NumPy (``tests.naive.muscl_rhs``), alternating within each round; the ratio is printed.
2. The particle side of the n-sweep: one ``particles.simulate`` run (RK4, dt = 0.1, to
   t = ``--t-max``) per n, the seconds per run, and the seconds per step per n^2.

Times are the minimum over ``--repeats`` rounds (the machine is shared; the load is printed).

    python benchmarks/bench_mean_field.py [--repeats 3] [--ns 256 1024 4096] [--t-max 12]
"""

import argparse
import os
import time

import numpy as np

import particles
from particles.mean_field import angles_to_points, sample_angles, solve
from particles.mean_field import scheme as scheme_module
from simulations.mean_field import MeanFieldConfig
from tests import naive


def numpy_flux(rho, u, h, out):
    out[:] = naive.muscl_rhs(rho, u, h)


def pde_once(rho0, flux):
    saved = scheme_module.muscl_rhs
    scheme_module.muscl_rhs = flux
    try:
        start = time.perf_counter()
        sol = solve(rho0, beta=5.0, t_max=30.0, frames=31)
        return time.perf_counter() - start, sol
    finally:
        scheme_module.muscl_rhs = saved


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ns", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--t-max", type=float, default=12.0)
    args = p.parse_args()
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores")

    rho0 = MeanFieldConfig(M=4096).rho0()
    pde_once(rho0, scheme_module.muscl_rhs)  # compile / load the Numba cache
    numba_times, numpy_times = [], []
    for _ in range(args.repeats):
        seconds, sol = pde_once(rho0, scheme_module.muscl_rhs)
        numba_times.append(seconds)
        seconds, ref = pde_once(rho0, numpy_flux)
        numpy_times.append(seconds)
        assert np.array_equal(sol.steps, ref.steps) and np.allclose(sol.rho, ref.rho, rtol=0, atol=1e-10)
    best, baseline = min(numba_times), min(numpy_times)
    steps = int(sol.steps[-1])
    print(f"PDE M = 4096, t = 30, beta = 5, SA: {steps} SSP-RK3 steps")
    print(f"  Numba flux  {best:7.2f} s  ({1e6 * best / steps / 3:6.1f} us per stage)")
    print(f"  NumPy flux  {baseline:7.2f} s  ({1e6 * baseline / steps / 3:6.1f} us per stage)")
    print(f"  ratio NumPy / Numba: {baseline / best:.2f}")

    print(f"particles.simulate, RK4, dt = 0.1, t = {args.t_max:g}, SA, beta = 5, d = 2:")
    print("       n   s per run   ns per step per pair")
    for n in args.ns:
        x0 = angles_to_points(sample_angles(rho0, n, seed=n))
        particles.simulate(x0[:8], beta=5.0, t_max=0.2, dt=0.1, method="rk4")
        spent = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            particles.simulate(x0, beta=5.0, t_max=args.t_max, dt=0.1, method="rk4", save_every=10)
            spent.append(time.perf_counter() - start)
        seconds = min(spent)
        steps = int(round(args.t_max / 0.1))
        print(f"  {n:6d}   {seconds:9.3f}   {1e9 * seconds / steps / n**2:8.3f}")


if __name__ == "__main__":
    main()
