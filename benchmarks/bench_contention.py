"""The phase diagram on a shared machine: each workload alone, then beside one busy process
of normal priority (a Python loop spinning on one core, started here), in the same run.

Workloads: the phase diagram (8 betas x 512 systems; and the authors' full default, 2048
systems x 90 betas x 300 steps, 200 checkpoints), the same 8 x 512 through the stepwise
path (a parallel launch per step and per checkpoint, the solver before the fused sweep),
and a plain batched torch Euler loop (512 systems, 300 steps, same scheme). Targets: the
phase diagram beside the busy process within 1.7x of alone, the full default alone under
60 s, and the phase-diagram setting at least 15x the authors' whole run (16.5 us per
system-step on this machine's CPU, quoted as in ``bench_simulate.py``: their code needs
CUDA code paths and is not rerun here). Times are the minimum of the repeats; alone and
beside alternate within each round, so a slow spell of the machine hits both.

    python benchmarks/bench_contention.py [--repeats 3] [--quick] [--no-stepwise]

``--quick`` leaves out the full default diagram (several minutes on a loaded machine).
"""

import argparse
import contextlib
import os
import subprocess
import sys
import time

import numpy as np
import torch
from bench_simulate import AUTHORS_US_PER_SYSTEM_STEP, torch_euler

import particles
import particles._phase_diagram
from particles import ClusteringEnsemble, beta_statistics, phase_diagram

TARGET_RATIO = 1.7
TARGET_SETTING = 15.0
FULL = dict(betas=90, batch=2048)
QUICK = dict(betas=8, batch=512)
STEPS = 300


@contextlib.contextmanager
def busy_process():
    """One Python process spinning on one core at normal priority for the block's duration."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it get going
        yield
    finally:
        spinner.kill()
        spinner.wait()


@contextlib.contextmanager
def stepwise_path():
    """The sweep as before the fused kernel: a parallel launch per step and per checkpoint."""
    module = particles._phase_diagram
    original = module._fits_fused_sweep
    module._fits_fused_sweep = lambda *args: False
    try:
        yield
    finally:
        module._fits_fused_sweep = original


def diagram(betas, batch, stepwise=False):
    def run():
        with stepwise_path() if stepwise else contextlib.nullcontext():
            phase_diagram(tuple(np.linspace(0.1, 9.0, betas)), batch=batch)

    return run


def torch_loop(batch):
    xt = torch.from_numpy(particles.sample_sphere(32, 2, batch=batch, seed=0))
    return lambda: torch_euler(xt, 5.0, 0.1, STEPS)


def alone_and_beside(fn, repeats):
    """Minimum wall time of fn alone and beside the busy process, alternating."""
    alone, beside = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        alone.append(time.perf_counter() - start)
        with busy_process():
            start = time.perf_counter()
            fn()
            beside.append(time.perf_counter() - start)
    return min(alone), min(beside)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="leave out the full default diagram")
    parser.add_argument("--no-stepwise", action="store_true", help="leave out the stepwise path")
    args = parser.parse_args()
    beta_statistics(1.0, ClusteringEnsemble(batch=16))  # compile / load caches
    with stepwise_path():
        beta_statistics(1.0, ClusteringEnsemble(batch=16))
    torch_loop(8)()
    print(
        f"cores available {len(os.sched_getaffinity(0))}, numba threads {particles._threads.available_threads()}, "
        f"torch threads {torch.get_num_threads()}; load average at start {os.getloadavg()[0]:.1f}"
    )
    workloads = [(f"phase diagram {QUICK['betas']} betas x {QUICK['batch']}", diagram(**QUICK), args.repeats, QUICK)]
    if not args.no_stepwise:
        stepwise = diagram(**QUICK, stepwise=True)
        workloads.append(("  same, stepwise path (before)", stepwise, args.repeats, QUICK))
    workloads.append((f"torch Euler loop {QUICK['batch']} systems", torch_loop(QUICK["batch"]), args.repeats, None))
    if not args.quick:
        workloads.append((f"phase diagram {FULL['betas']} betas x {FULL['batch']} (full)", diagram(**FULL), 1, FULL))
    print(f"\n{'workload':<42} {'alone s':>8} {'beside s':>9} {'ratio':>7}  {'setting':>8}")
    for name, fn, repeats, shape in workloads:
        alone, beside = alone_and_beside(fn, repeats)
        setting = ""
        if shape is not None:
            authors = AUTHORS_US_PER_SYSTEM_STEP * 1e-6 * shape["betas"] * shape["batch"] * STEPS
            setting = f"{authors / alone:7.2f}x"
        print(f"{name:<42} {alone:8.2f} {beside:9.2f} {beside / alone:6.2f}x  {setting:>8}", flush=True)
    print(
        f"\nratio: beside one busy process / alone (target within {TARGET_RATIO}x for the phase diagram); "
        f"setting: the authors' whole run ({AUTHORS_US_PER_SYSTEM_STEP} us per system-step) / ours alone "
        f"(target >= {TARGET_SETTING:g}x); full default alone: target under 60 s. "
        f"Load average at end {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
