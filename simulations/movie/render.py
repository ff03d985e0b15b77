"""Movies of a ``Trajectory``: which saved frames are shown, rendered once, written to one
or more MP4 / GIF files.

- d = 2: the tokens on the unit circle; d = 3: on a shaded, translucent sphere
  (``simulations.movie.scene``).
- d >= 4: tokens are mapped by a fixed random orthonormal projection R^d -> R^3 (seeded by
  ``projection_seed``) and pushed radially back onto S^2, then drawn as for d = 3. Tokens
  that coincide in R^d coincide in the picture, so clusters stay clusters; distances
  between clusters are distorted, and the subtitle says so.

Every token keeps one colour for the whole movie: the single-linkage cluster
(``cluster_labels`` at ``cluster_tol``) it belongs to in the *last* saved frame, the ten
largest clusters in tab10 colours and the rest grey.
"""

import dataclasses
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from particles.checks import check_int, check_real

from .projection import random_projection, to_sphere
from .scene import SPHERE_RGB, Scene, subtitle, token_colours
from .writers import GifWriter, Mp4Writer

__all__ = ["FORMATS", "Movie", "frame_indices", "movie_frames", "save_movie"]

FORMATS = ("mp4", "gif")


@dataclasses.dataclass(frozen=True)
class Movie:
    """What ``save_movie`` wrote.

    Attributes:
        paths: the files written, one per requested path.
        n_frames: number of movie frames.
        size: (width, height) in pixels.
        fps: frames per second.
        frames: (n_frames,) index of the saved trajectory frame shown in each movie frame.
        ts: (n_frames,) the trajectory time shown in each movie frame.
    """

    paths: tuple
    n_frames: int
    size: tuple
    fps: int
    frames: np.ndarray
    ts: np.ndarray


def frame_indices(ts, *, fps, duration=None):
    """Which saved frames a movie shows.

    Args:
        ts: (m,) saved times, non-decreasing.
        fps: movie frames per second, >= 1.
        duration: movie length in seconds, or None for one movie frame per saved frame.

    Returns:
        (round(fps * duration),) int64 indices into ``ts`` (all of ``arange(m)`` when
        ``duration`` is None): the saved frame nearest to each of the evenly spaced times
        from ts[0] to ts[-1]. When the movie has more frames than the run saved, saved
        frames repeat.
    """
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or len(ts) < 1:
        raise ValueError(f"ts must be a non-empty 1-D array of times, got shape {ts.shape}")
    fps = check_int("fps", fps, low=1)
    if duration is None:
        return np.arange(len(ts))
    duration = check_real("duration", duration, low=0.0, low_inclusive=False)
    n_frames = max(int(round(fps * duration)), 1)
    targets = np.linspace(ts[0], ts[-1], n_frames)
    right = np.clip(np.searchsorted(ts, targets), 1, max(len(ts) - 1, 1))
    left = right - 1
    if len(ts) == 1:
        return np.zeros(n_frames, dtype=np.int64)
    nearer_left = np.abs(targets - ts[left]) <= np.abs(ts[right] - targets)
    return np.where(nearer_left, left, right).astype(np.int64)


def movie_frames(
    traj,
    *,
    system=None,
    fps=20,
    duration=None,
    size=480,
    trail=6,
    cluster_tol=1e-2,
    elevation=20.0,
    azimuth=-60.0,
    spin=0.0,
    projection_seed=0,
):
    """Render a trajectory frame by frame.

    Args:
        traj: a ``Trajectory`` (``ts`` (m,), ``xs`` (m, [batch,] n, d), in memory or lazily
            read from HDF5: only the shown frames are read).
        system: index of the system to show when ``xs`` is batched (default 0); must be
            None for an unbatched trajectory.
        fps: movie frames per second (only used with ``duration``).
        duration: movie length in seconds; None shows every saved frame once.
        size: width and height in pixels, even, >= 64.
        trail: number of previous movie frames drawn as a fading trail behind each token.
        cluster_tol: linkage tolerance of the final clusters that colour the tokens.
        elevation, azimuth: viewing angles of the sphere in degrees (d >= 3).
        spin: degrees the view turns about the vertical axis over the whole movie.
        projection_seed: seed of the random projection used when d >= 4.

    Returns:
        (indices, frames): the (n_frames,) saved-frame indices shown, and a generator of
        (size, size, 3) uint8 RGB arrays, one per movie frame.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
    """
    xs, ts, batched = _check_trajectory(traj)
    system = _check_system(system, xs, batched)
    size = check_int("size", size, low=64)
    if size % 2:
        raise ValueError(f"size must be even (H.264 needs even dimensions), got {size}")
    trail = check_int("trail", trail, low=0)
    cluster_tol = check_real("cluster_tol", cluster_tol, low=0.0, low_inclusive=False)
    elevation = check_real("elevation", elevation)
    azimuth = check_real("azimuth", azimuth)
    spin = check_real("spin", spin)
    projection_seed = check_int("projection_seed", projection_seed, low=0)
    indices = frame_indices(ts, fps=fps, duration=duration)
    d = xs.shape[-1]
    projection = None if d <= 3 else random_projection(d, projection_seed)

    def read(k):
        x = np.asarray(xs[k, system] if batched else xs[k], dtype=np.float64)
        return x

    final = read(len(ts) - 1)
    colours, n_clusters = token_colours(final, cluster_tol)
    params = getattr(traj, "params", None)
    caption = subtitle(params, final.shape[0], d, n_clusters, ts[-1])

    def generate():
        scene = Scene(size=size, dim=min(d, 3), colours=colours, trail=trail, subtitle=caption)
        n_frames = len(indices)
        for i, k in enumerate(indices):
            x = read(k)
            if projection is not None:
                x = to_sphere(x @ projection)
            turn = spin * (i / (n_frames - 1) if n_frames > 1 else 0.0)
            yield scene.draw(x, ts[k], elevation=elevation, azimuth=azimuth + turn)

    return indices, generate()


def save_movie(traj, paths, *, overwrite=False, progress=False, **options):
    """Render a trajectory once and write it to one or more MP4 / GIF files.

    Args:
        traj: a ``Trajectory``, see ``movie_frames``.
        paths: a path or a list of paths ending in ``.mp4`` or ``.gif``; parent folders are
            created.
        overwrite: replace existing files; otherwise an existing one is a ``FileExistsError``
            (raised before any rendering).
        progress: show a progress bar over the movie frames.
        **options: ``system``, ``fps``, ``duration``, ``size``, ``trail``, ``cluster_tol``,
            ``elevation``, ``azimuth``, ``spin``, ``projection_seed`` as in ``movie_frames``.

    Returns:
        ``Movie`` with the paths written and the frames shown.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
        FileExistsError: a file of ``paths`` exists and ``overwrite`` is False.
        ImportError: imageio-ffmpeg (MP4) or Pillow (GIF) is not installed.

    Note:
        Pillow merges a GIF frame identical to the previous one into it (adding up their
        display times), so a GIF of a run that has stopped moving can decode to fewer
        frames than the MP4; the playing time is the same.

    Example:
        >>> from particles import sample_sphere, simulate
        >>> traj = simulate(sample_sphere(8, 3, seed=0), beta=4.0, t_max=1.0, dt=0.1)
        >>> movie = save_movie(traj, ["sphere.gif"], duration=1, size=96)
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths must name at least one .mp4 or .gif file, got none")
    for p in paths:
        if p.suffix.lower().lstrip(".") not in FORMATS:
            raise ValueError(f"paths must end in .mp4 or .gif, got {str(p)!r}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__} {overwrite!r}")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass overwrite=True to replace it")
    fps = check_int("fps", options.get("fps", 20), low=1)
    size = options.get("size", 480)
    indices, frames = movie_frames(traj, **options)
    swatches = _swatches(traj, options)
    writers = [
        Mp4Writer(p, size, fps) if p.suffix.lower() == ".mp4" else GifWriter(p, size, fps, swatches) for p in paths
    ]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        for frame in tqdm(frames, total=len(indices), unit="frame", desc="render movie", disable=not progress):
            for w in writers:
                w.append(frame)
    finally:
        for w in writers:
            w.close()
    ts = np.asarray(traj.ts, dtype=np.float64)[indices]
    return Movie(paths=tuple(paths), n_frames=len(indices), size=(size, size), fps=fps, frames=indices, ts=ts)


# --- input checks -------------------------------------------------------------------------


def _check_trajectory(traj):
    if not (hasattr(traj, "ts") and hasattr(traj, "xs")):
        raise TypeError(f"traj must be a particles.Trajectory (with .ts and .xs), got {type(traj).__name__}")
    xs = traj.xs
    shape = tuple(getattr(xs, "shape", np.shape(xs)))
    ts = np.asarray(traj.ts, dtype=np.float64)
    if len(shape) not in (3, 4):
        raise ValueError(f"traj.xs must have shape (frames, [batch,] n, d), got shape {shape}")
    if shape[-1] < 2:
        raise ValueError(f"traj.xs must have dimension d >= 2, got shape {shape}")
    if ts.shape != (shape[0],) or len(ts) < 1:
        raise ValueError(f"traj.ts must have shape ({shape[0]},) to match traj.xs {shape}, got shape {ts.shape}")
    if not isinstance(xs, np.ndarray) and not hasattr(xs, "__getitem__"):
        raise TypeError(f"traj.xs must be an array, got {type(xs).__name__}")
    return xs, ts, len(shape) == 4


def _check_system(system, xs, batched):
    if not batched:
        if system not in (None, 0):
            raise ValueError(
                f"system only applies to a batched trajectory, got system={system!r} for xs of shape {tuple(xs.shape)}"
            )
        return None
    if system is None:
        return 0
    batch = xs.shape[1]
    system = check_int("system", system, low=0)
    if system >= batch:
        raise ValueError(f"system must be in [0, {batch - 1}] for a batch of {batch}, got {system}")
    return system


def _swatches(traj, options):
    """A function width -> RGB strip of every token colour, pure and faded, for the palette."""

    def strip(width):
        xs, ts, batched = _check_trajectory(traj)
        system = _check_system(options.get("system"), xs, batched)
        final = np.asarray(xs[len(ts) - 1, system] if batched else xs[len(ts) - 1], dtype=np.float64)
        colours, _ = token_colours(final, options.get("cluster_tol", 1e-2))
        # Exact white (the background) and black (text, outlines) too: median cut would
        # otherwise average them with their neighbours.
        shades = [np.ones(3), np.zeros(3)]
        for c in np.unique(colours[:, :3], axis=0):
            for bg in (np.ones(3), np.array(SPHERE_RGB) * 0.8):
                for alpha in (1.0, 0.8, 0.45, 0.25):
                    shades.append(alpha * c + (1 - alpha) * bg)
        row = np.repeat(np.array(shades), -(-width // len(shades)), axis=0)[:width]
        return np.repeat((255 * row[None]).astype(np.uint8), 48, axis=0)

    return strip
