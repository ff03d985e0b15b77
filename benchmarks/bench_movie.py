"""Rendering speed of `simulations.movie`: movie frames per second for the circle and the
sphere, drawing alone and with the MP4 and GIF writers, on a synthetic trajectory (the
solver is not timed here).

    python benchmarks/bench_movie.py [--size 480] [--frames 120]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import particles
from simulations.movie import movie_frames, save_movie


def trajectory(n, d, frames, seed=0):
    """Tokens sliding along great circles into four points."""
    x0 = particles.sample_sphere(n, d, seed=seed)
    targets = particles.sample_sphere(4, d, seed=seed + 1)[np.arange(n) % 4]
    s = np.linspace(0.0, 1.0, frames)[:, None, None]
    xs = (1 - s) * x0 + s * targets
    xs /= np.linalg.norm(xs, axis=-1, keepdims=True)
    params = particles.SimulationParams(beta=4.0, t_max=10.0, dt=10.0 / (frames - 1))
    return particles.Trajectory(ts=np.linspace(0.0, 10.0, frames), xs=xs, params=params)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=480)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--n", type=int, default=64)
    args = p.parse_args()
    print(f"{args.frames} frames, {args.size} px, n = {args.n}")
    for d, spin in ((2, 0.0), (3, 0.0), (3, 40.0), (8, 0.0)):
        traj = trajectory(args.n, d, args.frames)
        t0 = time.perf_counter()
        for _ in movie_frames(traj, size=args.size, spin=spin)[1]:
            pass
        draw = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            paths = [Path(tmp) / "m.mp4", Path(tmp) / "m.gif"]
            t0 = time.perf_counter()
            save_movie(traj, paths, size=args.size, spin=spin)
            total = time.perf_counter() - t0
            sizes = [p.stat().st_size / 1e6 for p in paths]
        print(
            f"d = {d}, spin = {spin:g}: draw {args.frames / draw:6.1f} frames/s, with MP4 + GIF "
            f"{args.frames / total:6.1f} frames/s; MP4 {sizes[0]:.2f} MB, GIF {sizes[1]:.2f} MB"
        )


if __name__ == "__main__":
    main()
