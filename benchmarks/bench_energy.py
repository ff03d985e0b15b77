"""Energy of a whole trajectory: the block-by-block kernels against the full-array computation.

Workload of issue 18: the README run (2048 systems, n = 32, d = 2, SA, beta = 5, Euler with
dt = 0.1 to t_max = 30: 301 frames, 315 MB in float64), ``particles.energy`` and
``particles.normalized_energy`` of every frame and system. Target: under 2 s and under 500 MB
on top of the trajectory.

Baseline: the previous implementation, which formed the float64 Gram matrices and their
exponentials for all frames at once (~15 GB for the whole trajectory), so it is timed on the
first ``--baseline-frames`` frames only, next to the kernels on the same frames.

Each measurement runs in a fresh process that loads the trajectory from a .npy file and warms
up on one frame: extra memory is its peak resident size after the computation minus the one
before. Times are minima over ``--repeats`` in each of ``--rounds`` rounds, baseline and
kernels alternating; extra memory covers ``energy`` then ``normalized_energy`` in the same
process, the largest over rounds.

    python benchmarks/bench_energy.py [--rounds 2] [--repeats 3] [--baseline-frames 31]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import particles

RUN = dict(beta=5.0, t_max=30.0, dt=0.1)


def full_array_energy(x, beta):
    """The previous ``particles.energy``: Gram and exponential arrays of every configuration."""
    n = x.shape[-2]
    gram = x.astype(np.float64) @ np.swapaxes(x, -1, -2).astype(np.float64)
    return np.exp(beta * gram).sum(axis=(-2, -1)) / (2 * beta * n**2)


def full_array_normalized_energy(x, beta):
    """The previous ``particles.normalized_energy``."""
    n = x.shape[-2]
    gram = x.astype(np.float64) @ np.swapaxes(x, -1, -2).astype(np.float64)
    return np.exp(beta * (gram - 1.0)).sum(axis=(-2, -1)) / n**2


IMPLEMENTATIONS = {
    "kernels": (particles.energy, particles.normalized_energy),
    "full_array": (full_array_energy, full_array_normalized_energy),
}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child(impl, path, frames, repeats):
    """Time and measure one implementation on the first ``frames`` frames; prints JSON."""
    xs = np.load(path)[:frames]
    energy, normalized = IMPLEMENTATIONS[impl]
    energy(xs[:1], RUN["beta"])
    normalized(xs[:1], RUN["beta"])
    before = peak_rss_mb()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        e = energy(xs, RUN["beta"])
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    ne = normalized(xs, RUN["beta"])
    extra = peak_rss_mb() - before
    print(json.dumps(dict(time=min(walls), cpu=min(cpus), extra_mb=extra, e=e.tolist(), ne=ne.tolist())))


def measure(impl, path, frames, repeats):
    out = subprocess.run(
        [sys.executable, __file__, "--child", impl, str(path), str(frames), str(repeats)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2, help="rounds, baseline and kernels alternating (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per process (default 3)")
    p.add_argument("--baseline-frames", type=int, default=31, help="frames the full-array baseline gets (default 31)")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        impl, path, frames, repeats = args.child
        child(impl, path, int(frames), int(repeats))
        return
    x0 = particles.sample_sphere(32, 2, batch=2048, seed=0)
    xs = np.asarray(particles.simulate(x0, **RUN).xs)
    total = len(xs)
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores, numba threads {particles_threads()}")
    print(f"trajectory {xs.shape} float64, {xs.nbytes / 2**20:.0f} MiB; energy + normalized_energy at beta = 5")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "xs.npy"
        np.save(path, xs)
        small = args.baseline_frames
        rows = {("full_array", small): [], ("kernels", small): [], ("kernels", total): []}
        for _ in range(args.rounds):
            for key in rows:
                rows[key].append(measure(key[0], path, key[1], args.repeats))
    best = {key: min(runs, key=lambda r: r["time"]) for key, runs in rows.items()}
    ref, new = best["full_array", small], best["kernels", small]
    error = max(np.max(np.abs(np.array(new[k]) - np.array(ref[k])) / np.abs(np.array(ref[k]))) for k in ("e", "ne"))
    print("particles.energy of every frame and system (min over repeats; CPU: all threads)")
    print(f"{'implementation':14s} {'frames':>6s} {'wall (s)':>9s} {'CPU (s)':>8s} {'extra MB':>9s}")
    for (impl, frames), r in best.items():
        extra = max(r["extra_mb"] for r in rows[impl, frames])
        print(f"{impl:14s} {frames:6d} {r['time']:9.3f} {r['cpu']:8.3f} {extra:9.0f}")
    print(
        f"speed-up on {small} frames: {ref['time'] / new['time']:.1f}x wall, {ref['cpu'] / new['cpu']:.1f}x CPU; "
        f"largest relative difference (energy and normalized_energy) {error:.1e}"
    )
    whole = best["kernels", total]
    print(
        f"whole trajectory ({total} frames): {whole['time']:.2f} s wall, {whole['cpu']:.2f} s CPU (target < 2 s), "
        f"{max(r['extra_mb'] for r in rows['kernels', total]):.0f} MB extra (target < 500 MB)"
    )


def particles_threads():
    import numba

    return numba.get_num_threads()


if __name__ == "__main__":
    main()
