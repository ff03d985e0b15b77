"""Movies of self-attention particles: tokens on the circle (d = 2) or on a shaded sphere
(d = 3), coloured by the cluster they end up in, with short trails and the time on top.

A run is simulated from the flags (Q = K = V = I, uniform start) into an HDF5 file named by
its config under ``--out`` (a rerun reuses it), or read from a file written by
``simulate(..., store=...)`` with ``--from run.h5 [--system k]`` (only read). A d >= 4 run is
shown through a fixed random orthonormal projection to R^3 (seeded by ``--projection-seed``),
pushed radially onto the sphere: clusters stay clusters, distances between them are
distorted, and the subtitle says so.

MP4 needs ``pip install imageio-ffmpeg`` (it ships the ffmpeg binary); GIF uses Pillow.
Movies go to ``<out>/<name>.mp4`` and ``<out>/<name>.gif`` (default ``results/movie/``); an
existing movie is never replaced without ``--overwrite``.

    python -m simulations.movie --d 2 --n 32 --beta 4 --name circle
    python -m simulations.movie --d 3 --n 48 --beta 9 --spin 60 --name sphere
    python -m simulations.movie --from run.h5 --system 3 --duration 10 --format gif

From Python: ``run(MovieConfig(...), path)`` simulates, ``load(path)`` reads the trajectory,
``render(path, ["movie.gif"])`` writes the movie.
"""

import argparse
import dataclasses
from pathlib import Path

import particles
from particles.checks import check_int, check_real
from simulations.common.cli import (
    config_or_exit,
    integer,
    real,
    refuse_existing,
    set_threads,
    study_parser,
)
from simulations.common.naming import result_path

from .render import FORMATS, save_movie

#: Time measured on the 2-core development machine (one core's worth; README commands).
TIMING = "the README's circle ~15 s, sphere ~10 s, --from a stored run ~10 s"


@dataclasses.dataclass(frozen=True, kw_only=True)
class MovieConfig:
    """The simulated run of a movie: ``particles.simulate`` from uniform tokens (seed ``seed``), Q = K = V = I.

    Attributes:
        d: dimension (2: circle, 3: sphere, >= 4: projected); n: tokens.
        beta, t_max, dt, dynamics, method: as in ``particles.simulate``.
        seed: seed of the uniform initial tokens.
    """

    d: int = 2
    n: int = 32
    beta: float = 4.0
    t_max: float = 20.0
    dt: float = 0.05
    dynamics: str = "SA"
    method: str = "rk4"
    seed: int = 0

    def __post_init__(self):
        check_int("d", self.d, low=2)
        check_int("n", self.n, low=1)
        check_int("seed", self.seed, low=0)
        check_real("beta", self.beta, low=0.0)
        for name in ("t_max", "dt"):
            check_real(name, getattr(self, name), low=0.0, low_inclusive=False)
        if self.dynamics not in ("SA", "USA"):
            raise ValueError(f"dynamics must be 'SA' or 'USA', got {self.dynamics!r}")
        if self.method not in ("euler", "rk4", "dopri5"):
            raise ValueError(f"method must be 'euler', 'rk4' or 'dopri5', got {self.method!r}")

    def name(self):
        """Readable head of the file names (the digest of every field follows it)."""
        shape = {2: "circle", 3: "sphere"}.get(self.d, f"d{self.d}")
        return f"{shape}_n{self.n}_beta{self.beta:g}_{self.dynamics}"


def run(config, path, *, progress=True):
    """Simulate ``config`` into the run file ``path`` unless it holds the run complete (an interrupted
    one resumes; a file of another run is refused). Returns the path."""
    path = Path(path)
    if path.exists() and particles.io.info(path)["complete"]:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    x0 = particles.sample_sphere(config.n, config.d, seed=config.seed)
    particles.simulate(
        x0,
        beta=config.beta,
        t_max=config.t_max,
        dt=config.dt,
        dynamics=config.dynamics,
        method=config.method,
        progress=progress,
        store=particles.io.RunFile(path, seed=config.seed, resume=path.exists()),
    )
    return path


def load(path):
    """The trajectory of a run file (``particles.load``)."""
    return particles.load(path)


def render(path, movie_paths, *, overwrite=False, progress=True, **options):
    """Write the movie of the run file ``path`` to ``movie_paths`` (``.mp4``/``.gif``).

    Args:
        path: a run file (``run`` or ``particles.simulate(..., store=...)``).
        movie_paths: a path or a list of paths.
        overwrite: replace existing movie files (refused otherwise, before any rendering).
        progress: a progress bar over the movie frames.
        **options: as in ``save_movie`` (``system``, ``fps``, ``duration``, ``size``, ...).

    Returns:
        ``Movie``.
    """
    return save_movie(load(path), movie_paths, overwrite=overwrite, progress=progress, **options)


def build_parser():
    p = study_parser(
        "movie", __doc__, seed=0, seed_help="seed of the uniform initial tokens", timing=TIMING, full=False
    )
    src = p.add_argument_group("what to show")
    src.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        help="HDF5 run written by simulate(..., store=...) instead of simulating (default: simulate)",
    )
    src.add_argument(
        "--system", type=integer(0), default=None, help="which system of a batched run to show (default: 0)"
    )
    src.add_argument("--d", type=integer(2), default=2, help="dimension (2: circle, 3: sphere, >= 4: projected)")
    src.add_argument("--n", type=integer(1), default=32, help="number of tokens")
    src.add_argument("--beta", type=real(0.0), default=4.0, help="inverse temperature")
    src.add_argument("--t-max", type=real(above=0.0), default=20.0, help="end time")
    src.add_argument("--dt", type=real(above=0.0), default=0.05, help="time step")
    src.add_argument("--dynamics", choices=("SA", "USA"), default="SA", help="softmax (SA) or unnormalised (USA)")
    src.add_argument("--method", choices=("euler", "rk4", "dopri5"), default="rk4", help="integrator")
    look = p.add_argument_group("how to show it")
    look.add_argument("--fps", type=integer(1), default=20, help="frames per second")
    look.add_argument("--duration", type=real(0.0), default=6.0, help="seconds; 0 shows every saved frame once")
    look.add_argument("--size", type=_even_size, default=480, help="width = height in pixels (even, >= 64)")
    look.add_argument("--trail", type=integer(0), default=6, help="trail length in movie frames")
    look.add_argument(
        "--cluster-tol",
        type=real(above=0.0),
        default=1e-2,
        help="final clusters (that colour the tokens) link at <x_i, x_j> > 1 - tol",
    )
    look.add_argument("--elevation", type=real(), default=20.0, help="sphere view elevation (deg)")
    look.add_argument("--azimuth", type=real(), default=-60.0, help="sphere view azimuth (deg)")
    look.add_argument(
        "--spin", type=real(), default=0.0, help="degrees the sphere view turns over the movie (GIFs grow with it)"
    )
    look.add_argument("--projection-seed", type=integer(0), default=0, help="random 3-D projection, d >= 4")
    out = p.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS + ("both",), default="both", help="movie format")
    out.add_argument(
        "--name", default=None, help="movie file stem (default: the run file's stem, and the system shown)"
    )
    return p


def _even_size(text):
    size = integer(64)(text)
    if size % 2:
        raise argparse.ArgumentTypeError(f"must be even (H.264 needs even dimensions), got {text!r}")
    return size


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def config_from_args(args):
    return MovieConfig(
        d=args.d,
        n=args.n,
        beta=args.beta,
        t_max=args.t_max,
        dt=args.dt,
        dynamics=args.dynamics,
        method=args.method,
        seed=args.seed,
    )


def output_paths(args):
    """The run file (simulated or ``--from``) and the movie files."""
    if args.source is None:
        config = config_from_args(args)
        path = result_path(args.out, config.name(), config)
    else:
        path = args.source
    system = "" if args.system is None else f"_system{args.system}"
    stem = args.name or f"{path.stem}{system}"
    formats = FORMATS if args.format == "both" else (args.format,)
    return path, [args.out / f"{stem}.{ext}" for ext in formats]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.source is not None and not args.source.is_file():
        parser.error(f"argument --from: must be an HDF5 run file, got {str(args.source)!r}")
    path, movies = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, movies)
    progress = not args.no_progress
    if args.source is None:
        run(config_from_args(args), path, progress=progress)
    movie = render(
        path,
        movies,
        overwrite=args.overwrite,
        progress=progress,
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
    for movie_path in movie.paths:
        print(
            f"saved {movie_path} ({movie_path.stat().st_size / 1e6:.2f} MB, {movie.n_frames} frames, "
            f"{movie.size[0]}x{movie.size[1]}, {movie.fps} fps)"
        )
    return movie


if __name__ == "__main__":
    main()
