"""Writing trajectories to HDF5 (particles.io): throughput, file size, cost of storing.

Workload of the storage issue: the authors' default run (2048 systems, n = 32, d = 2, SA,
beta = 5, Euler with dt = 0.1 to t_max = 30: 301 frames at save_every = 1, 1 MiB per frame
in float64). For each storage dtype and compression:

- write: the store path alone (the frames of a finished run replayed through
  ``simulate(store=...)``), in MB/s of uncompressed frame data and frames/s;
- size: the file, and its ratio to the uncompressed frames;
- overhead: ``simulate(..., store=...)`` against ``simulate`` on the same run, timed
  alternately, in wall and in CPU time (all threads); and the CPU time of the store path
  alone over the CPU time of the simulation, the overhead when every core is busy.

Times are the minimum of several repeats (this machine is shared and noisy).

    python benchmarks/bench_io.py [--repeats 3] [--dir /tmp]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numba
import numpy as np

import particles
from particles import _simulate, io

RUN = dict(beta=5.0, t_max=30.0, dt=0.1, save_every=1)


def best_time(fn, repeats):
    return paired_times(fn, lambda: None, repeats)[0][0]


def paired_times(fn_a, fn_b, repeats):
    """((wall, cpu) of fn_a, (wall, cpu) of fn_b): minima over repeats, run alternately so
    that both see the same load. cpu is the process time of all threads (Numba's and the
    writer's), steadier than wall time on a shared machine."""
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, a), (fn_b, b)):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
    best = lambda times: (min(w for w, _ in times), min(c for _, c in times))  # noqa: E731
    return best(a), best(b)


def replay(frames, ts):
    """A stand-in for ``_simulate.run`` that yields precomputed frames: times the writer only."""

    def run(x0, params, *, progress=False, start=None, **kwargs):
        first = 0 if start is None else start[0] + 1
        for k in range(first, len(ts)):
            yield float(ts[k]), frames[k]

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="directory for the files (default: a temp dir)")
    args = parser.parse_args()
    print(
        f"h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, "
        f"numba {numba.__version__} ({numba.get_num_threads()} threads), {os.cpu_count()} CPUs"
    )
    x0 = particles.sample_sphere(32, 2, batch=2048, seed=0)
    particles.simulate(x0, **{**RUN, "t_max": 0.2})  # compile
    reference = particles.simulate(x0, **RUN)
    frames, ts = list(reference.xs), reference.ts
    print(
        f"workload: {x0.shape[0]} systems, n={x0.shape[1]}, d={x0.shape[2]}, {len(ts)} frames, "
        f"{reference.xs[0].nbytes / 2**20:.2f} MiB per float64 frame"
    )
    t_sim = best_time(lambda: particles.simulate(x0, **RUN), args.repeats)
    print(f"simulate without store: {t_sim:.2f} s ({len(ts) / t_sim:.0f} frames/s)\n")

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "run.h5"
        print(
            f"{'storage':>8} {'compr.':>6} {'write MB/s':>10} {'frames/s':>9} {'size MB':>8} "
            f"{'ratio':>6} {'sim s':>6} {'store s':>8} {'wall +%':>8} {'cpu +%':>7} "
            f"{'write cpu/sim cpu':>17}"
        )
        for store_dtype in ("float64", "float32"):
            raw = len(ts) * reference.xs[0].size * np.dtype(store_dtype).itemsize
            for compression in (None, "lzf", "gzip"):

                def write():
                    _simulate.run, original = replay(frames, ts), _simulate.run
                    try:
                        particles.simulate(
                            x0,
                            **RUN,
                            store=io.RunFile(path, overwrite=True, store_dtype=store_dtype, compression=compression),
                        )
                    finally:
                        _simulate.run = original

                (t_write, cpu_write), _ = paired_times(write, lambda: None, args.repeats)
                size = path.stat().st_size

                def store():
                    particles.simulate(
                        x0,
                        **RUN,
                        store=io.RunFile(path, overwrite=True, store_dtype=store_dtype, compression=compression),
                    )

                (sim, sim_cpu), (st, st_cpu) = paired_times(lambda: particles.simulate(x0, **RUN), store, args.repeats)
                stored = particles.load(path)
                assert np.array_equal(stored.xs[-1], reference.xs[-1].astype(store_dtype))
                print(
                    f"{store_dtype:>8} {str(compression):>6} {raw / 1e6 / t_write:>10.0f} "
                    f"{len(ts) / t_write:>9.0f} {size / 1e6:>8.1f} {size / raw:>6.3f} "
                    f"{sim:>6.2f} {st:>8.2f} {100 * (st - sim) / sim:>7.1f}% "
                    f"{100 * (st_cpu - sim_cpu) / sim_cpu:>6.1f}% "
                    f"{100 * cpu_write / sim_cpu:>16.1f}%"
                )
        # Reading back: one frame, one system over all frames, everything.
        particles.simulate(x0, **RUN, store=io.RunFile(path, overwrite=True))
        lazy = particles.load(path).xs
        for label, fn in (
            ("one frame", lambda: lazy[150]),
            ("one system", lambda: lazy[:, 7]),
            ("all frames", lambda: np.asarray(lazy)),
        ):
            t = best_time(fn, args.repeats)
            print(f"read {label:<10} (float64, compression {io.DEFAULT_COMPRESSION}): {t * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
