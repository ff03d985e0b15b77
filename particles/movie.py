"""Movies of a ``Trajectory``: tokens on the circle (d = 2) or on a shaded sphere (d >= 3).

Each movie frame is drawn with matplotlib's Agg canvas (no pyplot state, no display) and
handed to the writers as an RGB array: MP4 through the ffmpeg binary that the
``imageio-ffmpeg`` package ships, GIF through Pillow. matplotlib, Pillow and imageio-ffmpeg
are imported only when a movie is rendered, so ``import particles`` stays light.

What is drawn:

- d = 2: the unit circle and the tokens on it.
- d = 3: an orthographic view of the unit sphere, shaded (Lambert) and translucent, with a
  wireframe of meridians and parallels; tokens on the far side are drawn faded behind it.
- d >= 4: tokens are mapped by a fixed random orthonormal projection R^d -> R^3 (seeded by
  ``projection_seed``) and pushed radially back onto S^2, then drawn as for d = 3. Tokens
  that coincide in R^d coincide in the picture, so clusters stay clusters; distances
  between clusters are distorted, and the subtitle says so.

Every token keeps one colour for the whole movie: the single-linkage cluster
(``cluster_labels`` at ``cluster_tol``) it belongs to in the *last* saved frame, the ten
largest clusters in tab10 colours and the rest grey. Short fading trails show the last
``trail`` movie frames of each token.
"""

import collections
import dataclasses
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ._checks import check_int, check_real
from .observables import cluster_labels

__all__ = ["FORMATS", "Movie", "frame_indices", "movie_frames", "save_movie"]

FORMATS = ("mp4", "gif")
# Colours of the ten largest final clusters; smaller ones share _OTHER.
_N_COLOURED = 10
_OTHER = (0.55, 0.55, 0.55, 1.0)
_DPI = 100
# Light direction in camera coordinates (x right, y up, z toward the viewer).
_LIGHT = np.array([-0.45, 0.55, 0.70]) / np.linalg.norm([-0.45, 0.55, 0.70])


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
    projection = None if d <= 3 else _random_projection(d, projection_seed)

    def read(k):
        x = np.asarray(xs[k, system] if batched else xs[k], dtype=np.float64)
        return x

    final = read(len(ts) - 1)
    colours, n_clusters = _cluster_colours(final, cluster_tol)
    params = getattr(traj, "params", None)
    subtitle = _subtitle(params, final.shape[0], d, n_clusters, ts[-1])

    def generate():
        scene = _Scene(size=size, dim=min(d, 3), colours=colours, trail=trail, subtitle=subtitle)
        n_frames = len(indices)
        for i, k in enumerate(indices):
            x = read(k)
            if projection is not None:
                x = _to_sphere(x @ projection)
            turn = spin * (i / (n_frames - 1) if n_frames > 1 else 0.0)
            yield scene.draw(x, ts[k], elevation=elevation, azimuth=azimuth + turn)

    return indices, generate()


def save_movie(traj, paths, *, progress=False, **options):
    """Render a trajectory once and write it to one or more MP4 / GIF files.

    Args:
        traj: a ``Trajectory``, see ``movie_frames``.
        paths: a path or a list of paths ending in ``.mp4`` or ``.gif``; parent folders are
            created.
        progress: show a progress bar over the movie frames.
        **options: ``system``, ``fps``, ``duration``, ``size``, ``trail``, ``cluster_tol``,
            ``elevation``, ``azimuth``, ``spin``, ``projection_seed`` as in ``movie_frames``.

    Returns:
        ``Movie`` with the paths written and the frames shown.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
        ImportError: imageio-ffmpeg (MP4) or Pillow (GIF) is not installed.

    Note:
        Pillow merges a GIF frame identical to the previous one into it (adding up their
        display times), so a GIF of a run that has stopped moving can decode to fewer
        frames than the MP4; the playing time is the same.

    Example:
        >>> traj = simulate(sample_sphere(32, 3, seed=0), beta=4.0, t_max=10, dt=0.05)
        >>> save_movie(traj, ["movies/sphere.mp4", "movies/sphere.gif"], duration=5)
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths must name at least one .mp4 or .gif file, got none")
    for p in paths:
        if p.suffix.lower().lstrip(".") not in FORMATS:
            raise ValueError(f"paths must end in .mp4 or .gif, got {str(p)!r}")
    fps = check_int("fps", options.get("fps", 20), low=1)
    size = options.get("size", 480)
    indices, frames = movie_frames(traj, **options)
    swatches = _swatches(traj, options)
    writers = [
        _Mp4Writer(p, size, fps) if p.suffix.lower() == ".mp4" else _GifWriter(p, size, fps, swatches) for p in paths
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


# --- geometry -------------------------------------------------------------------------------


def _random_projection(d, seed):
    """(d, 3) matrix with orthonormal columns: QR of a Gaussian matrix, signs fixed."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, 3)))
    return q * np.sign(np.diag(r))


def _to_sphere(y):
    norms = np.linalg.norm(y, axis=-1, keepdims=True)
    # A token almost orthogonal to the projected subspace has no meaningful direction.
    return y / np.maximum(norms, 1e-12)


def _rotation(elevation, azimuth):
    """Rows: camera axes (right, up, toward viewer) in world coordinates (z is world up)."""
    el, az = np.deg2rad(elevation), np.deg2rad(azimuth)
    toward = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    right = np.array([-np.sin(az), np.cos(az), 0.0])
    up = np.cross(toward, right)
    return np.stack([right, up, toward])


def _cluster_colours(final, tol):
    import matplotlib

    labels, sizes = cluster_labels(final, tol=tol)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    palette = matplotlib.colormaps["tab10"]
    colours = np.array([palette(r) if r < _N_COLOURED else _OTHER for r in rank[labels]])
    return colours, len(sizes)


def _subtitle(params, n, d, n_clusters, t_final):
    parts = []
    if params is not None and hasattr(params, "dynamics"):
        parts.append(f"{params.dynamics}, β = {params.beta:g}")
    parts.append(f"n = {n}, d = {d}")
    if d > 3:
        parts.append("random 3-D projection")
    parts.append(f"{n_clusters} cluster{'s' * (n_clusters != 1)} at t = {t_final:g}")
    return "   ".join(parts)


# --- drawing -------------------------------------------------------------------------------


class _Scene:
    """One matplotlib figure whose artists are updated in place for every frame."""

    def __init__(self, *, size, dim, colours, trail, subtitle):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure

        self.size, self.dim, self.colours, self.trail = size, dim, colours, trail
        self.fig = Figure(figsize=(size / _DPI, size / _DPI), dpi=_DPI, facecolor="white")
        self.canvas = FigureCanvasAgg(self.fig)
        ax = self.fig.add_axes((0.03, 0.02, 0.94, 0.86))
        ax.set_xlim(-1.12, 1.12)
        ax.set_ylim(-1.12, 1.12)
        ax.set_aspect("equal")
        ax.set_axis_off()
        self.ax = ax
        # Text and markers scale with the frame, but stay legible in small test frames.
        scale = max(size / 480, 0.5)
        self.title = self.fig.text(0.5, 0.965, "", ha="center", va="top", fontsize=15 * scale)
        self.fig.text(0.5, 0.905, subtitle, ha="center", va="top", fontsize=8.5 * scale, color="0.3")
        self.history = collections.deque(maxlen=trail + 1)
        marker = 42 * scale**2
        lw = 1.6 * scale
        if dim == 2:
            theta = np.linspace(0, 2 * np.pi, 400)
            ax.plot(np.cos(theta), np.sin(theta), color="0.6", lw=1.2 * scale, zorder=1)
            self.back_trails = self.back_tokens = None
        else:
            self.back_trails = ax.add_collection(LineCollection([], linewidths=lw, zorder=1))
            self.back_tokens = ax.scatter([], [], s=marker * 0.7, zorder=2, linewidths=0)
            self.back_wire = ax.add_collection(
                LineCollection([], colors=[(0.2, 0.25, 0.35, 0.12)], linewidths=0.6 * scale, zorder=1)
            )
            ax.imshow(_shaded_disc(2 * size), extent=(-1, 1, -1, 1), origin="lower", zorder=3, interpolation="bilinear")
            self.front_wire = ax.add_collection(
                LineCollection([], colors=[(0.15, 0.2, 0.3, 0.28)], linewidths=0.6 * scale, zorder=4)
            )
            self.wire = _wireframe()
            self.view = None
        self.front_trails = ax.add_collection(LineCollection([], linewidths=lw, zorder=5))
        self.front_tokens = ax.scatter([], [], s=marker, zorder=6, edgecolors="black", linewidths=0.5 * scale)

    def draw(self, x, t, *, elevation, azimuth):
        if self.dim == 2:
            uv, depth = x[:, :2], np.ones(len(x))
        else:
            R = _rotation(elevation, azimuth)
            cam = x[:, :3] @ R.T
            uv, depth = cam[:, :2], cam[:, 2]
            if self.view != (elevation, azimuth):
                self.view = (elevation, azimuth)
                self._draw_wireframe(R)
        self.history.append((uv, depth))
        front = depth >= 0
        self.front_tokens.set_offsets(uv[front])
        self.front_tokens.set_facecolors(self.colours[front])
        if self.back_tokens is not None:
            back_colours = self.colours[~front].copy()
            back_colours[:, 3] = 0.45
            self.back_tokens.set_offsets(uv[~front].reshape(-1, 2))
            self.back_tokens.set_facecolors(back_colours)
        self._draw_trails()
        self.title.set_text(f"t = {t:.2f}")
        self.canvas.draw()
        rgba = np.asarray(self.canvas.buffer_rgba())
        return np.ascontiguousarray(rgba[:, :, :3])

    def _draw_trails(self):
        segments, colours, fronts = [], [], []
        steps = list(self.history)
        for age in range(1, len(steps)):
            (a, da), (b, db) = steps[-age - 1], steps[-age]
            segments.append(np.stack([a, b], axis=1))
            c = self.colours.copy()
            # Older segments fade linearly; the newest is as opaque as the tokens allow.
            c[:, 3] = 0.8 * (1 - (age - 1) / max(self.trail, 1))
            colours.append(c)
            fronts.append((da + db) >= 0)
        if not segments:
            self.front_trails.set_segments([])
            if self.back_trails is not None:
                self.back_trails.set_segments([])
            return
        segments, colours, fronts = (np.concatenate(v) for v in (segments, colours, fronts))
        self.front_trails.set_segments(segments[fronts])
        self.front_trails.set_colors(colours[fronts])
        if self.back_trails is not None:
            back = colours[~fronts].copy()
            back[:, 3] *= 0.4
            self.back_trails.set_segments(segments[~fronts])
            self.back_trails.set_colors(back)

    def _draw_wireframe(self, R):
        cam = self.wire @ R.T  # (curves, points, 3)
        a, b = cam[:, :-1], cam[:, 1:]
        seg = np.stack([a[..., :2], b[..., :2]], axis=2).reshape(-1, 2, 2)
        front = ((a[..., 2] + b[..., 2]) >= 0).reshape(-1)
        self.front_wire.set_segments(seg[front])
        self.back_wire.set_segments(seg[~front])


def _wireframe():
    """(curves, points, 3): 12 meridians and 5 parallels of the unit sphere."""
    s = np.linspace(0, 2 * np.pi, 73)
    curves = []
    for phi in np.arange(12) * np.pi / 6:
        curves.append(np.stack([np.cos(s) * np.cos(phi), np.cos(s) * np.sin(phi), np.sin(s)], -1))
    for lat in np.deg2rad([-60, -30, 0, 30, 60]):
        curves.append(np.stack([np.cos(lat) * np.cos(s), np.cos(lat) * np.sin(s), np.full_like(s, np.sin(lat))], -1))
    return np.stack(curves)


def _shaded_disc(pixels):
    """RGBA image of the lit, translucent front of the unit sphere seen from +z."""
    u = np.linspace(-1, 1, pixels)
    U, Vv = np.meshgrid(u, u)
    r2 = U**2 + Vv**2
    inside = r2 <= 1.0
    W = np.sqrt(np.clip(1.0 - r2, 0.0, None))
    lambert = np.clip(U * _LIGHT[0] + Vv * _LIGHT[1] + W * _LIGHT[2], 0.0, 1.0)
    shade = 0.55 + 0.45 * lambert
    base = np.array([0.80, 0.86, 0.95])
    img = np.zeros((pixels, pixels, 4))
    img[..., :3] = shade[..., None] * base
    # Translucent so that tokens on the far side show through, faded.
    img[..., 3] = np.where(inside, 0.78, 0.0)
    return img


# --- writers -------------------------------------------------------------------------------


class _Mp4Writer:
    def __init__(self, path, size, fps):
        try:
            import imageio_ffmpeg
        except ImportError as err:
            raise ImportError(
                "writing MP4 needs imageio-ffmpeg, which ships an ffmpeg binary: "
                "pip install imageio-ffmpeg (or the 'movies' extra)"
            ) from err
        path.parent.mkdir(parents=True, exist_ok=True)
        # H.264 at constant quality; yuv420p plays everywhere. macro_block_size=2 keeps the
        # requested (even) size instead of rescaling to a multiple of 16.
        self.gen = imageio_ffmpeg.write_frames(
            str(path),
            (size, size),
            fps=fps,
            codec="libx264",
            macro_block_size=2,
            quality=None,
            ffmpeg_log_level="error",
            output_params=["-crf", "26", "-preset", "medium", "-movflags", "+faststart"],
        )
        self.gen.send(None)

    def append(self, frame):
        self.gen.send(np.ascontiguousarray(frame))

    def close(self):
        self.gen.close()


class _GifWriter:
    def __init__(self, path, size, fps, swatches):
        try:
            from PIL import Image
        except ImportError as err:
            raise ImportError("writing GIF needs Pillow: pip install pillow") from err
        self.Image, self.path, self.fps, self.swatches = Image, path, fps, swatches
        self.frames, self.palette = [], None

    def append(self, frame):
        if self.palette is None:
            # One palette for the whole movie (a per-frame palette makes the shading
            # flicker), from the first frame plus large swatches of the token colours: the
            # tokens cover too few pixels for median cut to keep their colours otherwise.
            strip = self.swatches(frame.shape[1])
            sample = np.concatenate([frame, strip], axis=0)
            quantized = self.Image.fromarray(sample).quantize(colors=128, method=self.Image.Quantize.MEDIANCUT)
            pal = np.array(quantized.getpalette()[: 3 * 128], dtype=np.int64).reshape(-1, 3)
            # Median cut returns box averages: snap entries to the exact colours they stand
            # for (white would otherwise come out as 252).
            exact = np.unique(strip.reshape(-1, 3), axis=0).astype(np.int64)
            dist = np.abs(pal[:, None, :] - exact[None]).sum(axis=-1)
            near = dist.min(axis=1) <= 12
            pal[near] = exact[dist.argmin(axis=1)[near]]
            self.palette = pal
        # Exact nearest palette entry per distinct colour (Pillow's palette lookup is
        # approximate and maps white to a grey).
        keys = (frame[..., 0].astype(np.int64) << 16) | (frame[..., 1].astype(np.int64) << 8) | frame[..., 2]
        uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
        colours = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=-1)
        nearest = ((colours[:, None, :] - self.palette[None]) ** 2).sum(axis=-1).argmin(axis=1)
        index = nearest[inverse].astype(np.uint8).reshape(frame.shape[:2])
        h, w = index.shape
        im = self.Image.frombuffer("P", (w, h), index.tobytes(), "raw", "P", 0, 1)
        im.putpalette(self.palette.astype(np.uint8).ravel().tolist())
        self.frames.append(im)

    def close(self):
        if not self.frames:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # GIF stores delays in hundredths of a second.
        delay = max(int(round(100 / self.fps)), 2) * 10
        self.frames[0].save(
            self.path, save_all=True, append_images=self.frames[1:], duration=delay, loop=0, optimize=True, disposal=1
        )


def _swatches(traj, options):
    """A function width -> RGB strip of every token colour, pure and faded, for the palette."""

    def strip(width):
        xs, ts, batched = _check_trajectory(traj)
        system = _check_system(options.get("system"), xs, batched)
        final = np.asarray(xs[len(ts) - 1, system] if batched else xs[len(ts) - 1], dtype=np.float64)
        colours, _ = _cluster_colours(final, options.get("cluster_tol", 1e-2))
        # Exact white (the background) and black (text, outlines) too: median cut would
        # otherwise average them with their neighbours.
        shades = [np.ones(3), np.zeros(3)]
        for c in np.unique(colours[:, :3], axis=0):
            for bg in (np.ones(3), np.array([0.80, 0.86, 0.95]) * 0.8):
                for alpha in (1.0, 0.8, 0.45, 0.25):
                    shades.append(alpha * c + (1 - alpha) * bg)
        row = np.repeat(np.array(shades), -(-width // len(shades)), axis=0)[:width]
        return np.repeat((255 * row[None]).astype(np.uint8), 48, axis=0)

    return strip
