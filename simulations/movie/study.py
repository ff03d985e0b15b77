"""Movies of self-attention particles: tokens on the circle (d = 2) or on a shaded sphere
(d = 3), coloured by the cluster they end up in, with short trails and the time on top.

A run is simulated on the spot from the flags (Q = K = V = I, uniform start), or read from
an HDF5 file written by ``simulate(..., store=...)`` with ``--from run.h5 [--system k]``.
A d >= 4 run is shown through a fixed random orthonormal projection to R^3 (seeded by
``--projection-seed``), pushed radially onto the sphere: clusters stay clusters, distances
between them are distorted, and the subtitle says so.

MP4 needs ``pip install imageio-ffmpeg`` (it ships the ffmpeg binary); GIF uses Pillow.
Files go to ``<out>/<name>.mp4`` and ``<out>/<name>.gif`` (default ``movies/``).

    python -m simulations.movie --d 2 --n 32 --beta 4 --name circle
    python -m simulations.movie --d 3 --n 48 --beta 9 --spin 60 --name sphere
    python -m simulations.movie --from run.h5 --system 3 --duration 10 --format gif
"""

import argparse
import sys
from pathlib import Path

import particles
from simulations.common.naming import config_digest

from .render import FORMATS, save_movie


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m simulations.movie",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_argument_group("what to show")
    src.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        help="HDF5 run written by simulate(..., store=...) instead of simulating",
    )
    src.add_argument("--system", type=int, default=None, help="which system of a batched run to show (default 0)")
    src.add_argument("--d", type=int, default=2, help="dimension (2: circle, 3: sphere, >= 4: projected)")
    src.add_argument("--n", type=int, default=32, help="number of tokens")
    src.add_argument("--beta", type=float, default=4.0)
    src.add_argument("--t-max", type=float, default=20.0)
    src.add_argument("--dt", type=float, default=0.05)
    src.add_argument("--dynamics", choices=("SA", "USA"), default="SA")
    src.add_argument("--method", choices=("euler", "rk4", "dopri5"), default="rk4")
    src.add_argument("--seed", type=int, default=0, help="seed of the uniform initial tokens")
    src.add_argument("--store", type=Path, default=None, help="also write the simulated run to this HDF5 file")
    look = p.add_argument_group("how to show it")
    look.add_argument("--fps", type=int, default=20, help="frames per second")
    look.add_argument("--duration", type=float, default=6.0, help="seconds; 0 shows every saved frame once")
    look.add_argument("--size", type=int, default=480, help="width = height in pixels (even)")
    look.add_argument("--trail", type=int, default=6, help="trail length in movie frames")
    look.add_argument(
        "--cluster-tol",
        type=float,
        default=1e-2,
        help="final clusters (that colour the tokens) link at <x_i, x_j> > 1 - tol",
    )
    look.add_argument("--elevation", type=float, default=20.0, help="sphere view elevation (deg)")
    look.add_argument("--azimuth", type=float, default=-60.0, help="sphere view azimuth (deg)")
    look.add_argument(
        "--spin", type=float, default=0.0, help="degrees the sphere view turns over the movie (GIFs grow with it)"
    )
    look.add_argument("--projection-seed", type=int, default=0, help="random 3-D projection, d >= 4")
    out = p.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS + ("both",), default="both")
    out.add_argument("--out", type=Path, default=Path("movies"))
    out.add_argument("--name", default=None, help="file stem (default: from the run and a hash)")
    return p.parse_args(argv)


def load_or_simulate(args):
    """The trajectory to show and a default file stem."""
    if args.source is not None:
        if not args.source.is_file():
            sys.exit(f"error: --from must be an HDF5 run file, got {str(args.source)!r}")
        traj = particles.load(args.source)
        system = "" if args.system is None else f"_system{args.system}"
        return traj, f"{args.source.stem}{system}"
    x0 = particles.sample_sphere(args.n, args.d, seed=args.seed)
    store = {} if args.store is None else {"store": particles.io.RunFile(args.store, overwrite=True)}
    traj = particles.simulate(
        x0,
        beta=args.beta,
        t_max=args.t_max,
        dt=args.dt,
        dynamics=args.dynamics,
        method=args.method,
        progress=True,
        **store,
    )
    config = {k: getattr(args, k) for k in ("d", "n", "beta", "t_max", "dt", "dynamics", "method", "seed")}
    shape = {2: "circle", 3: "sphere"}.get(args.d, f"d{args.d}")
    return traj, f"{shape}_n{args.n}_beta{args.beta:g}_{args.dynamics}_{config_digest(config)}"


def main(argv=None):
    args = parse_args(argv)
    traj, stem = load_or_simulate(args)
    formats = FORMATS if args.format == "both" else (args.format,)
    paths = [args.out / f"{args.name or stem}.{ext}" for ext in formats]
    movie = save_movie(
        traj,
        paths,
        progress=True,
        system=args.system,
        fps=args.fps,
        duration=args.duration or None,
        size=args.size,
        trail=args.trail,
        cluster_tol=args.cluster_tol,
        elevation=args.elevation,
        azimuth=args.azimuth,
        spin=args.spin,
        projection_seed=args.projection_seed,
    )
    for path in movie.paths:
        print(
            f"saved {path} ({path.stat().st_size / 1e6:.2f} MB, {movie.n_frames} frames, "
            f"{movie.size[0]}x{movie.size[1]}, {movie.fps} fps)"
        )
    return movie


if __name__ == "__main__":
    main()
