"""The picture of one movie frame: a matplotlib figure (Agg canvas, no pyplot state) whose
artists are updated in place, frame after frame.

- d = 2: the unit circle and the tokens on it.
- d = 3: an orthographic view of the unit sphere, shaded (Lambert) and translucent, with a
  wireframe of meridians and parallels; tokens on the far side are drawn faded behind it.

Every token keeps one colour for the whole movie (``token_colours``), and short fading
trails show its last ``trail`` movie frames.
"""

import collections

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from particles import cluster_labels

# Colours of the ten largest final clusters; smaller ones share _OTHER.
_N_COLOURED = 10
_OTHER = (0.55, 0.55, 0.55, 1.0)
_DPI = 100
# Light direction in camera coordinates (x right, y up, z toward the viewer).
_LIGHT = np.array([-0.45, 0.55, 0.70]) / np.linalg.norm([-0.45, 0.55, 0.70])
# The sphere's colour before shading.
SPHERE_RGB = (0.80, 0.86, 0.95)


def token_colours(final, tol):
    """RGBA per token: the ten largest single-linkage clusters of ``final`` in tab10, the rest grey;
    and the number of clusters."""
    labels, sizes = cluster_labels(final, tol=tol)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    palette = colormaps["tab10"]
    colours = np.array([palette(r) if r < _N_COLOURED else _OTHER for r in rank[labels]])
    return colours, len(sizes)


def subtitle(params, n, d, n_clusters, t_final):
    parts = []
    if params is not None and hasattr(params, "dynamics"):
        parts.append(f"{params.dynamics}, β = {params.beta:g}")
    parts.append(f"n = {n}, d = {d}")
    if d > 3:
        parts.append("random 3-D projection")
    parts.append(f"{n_clusters} cluster{'s' * (n_clusters != 1)} at t = {t_final:g}")
    return "   ".join(parts)


def rotation(elevation, azimuth):
    """Rows: camera axes (right, up, toward viewer) in world coordinates (z is world up)."""
    el, az = np.deg2rad(elevation), np.deg2rad(azimuth)
    toward = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    right = np.array([-np.sin(az), np.cos(az), 0.0])
    up = np.cross(toward, right)
    return np.stack([right, up, toward])


class Scene:
    """One matplotlib figure whose artists are updated in place for every frame."""

    def __init__(self, *, size, dim, colours, trail, subtitle):
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
            R = rotation(elevation, azimuth)
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
    base = np.array(SPHERE_RGB)
    img = np.zeros((pixels, pixels, 4))
    img[..., :3] = shade[..., None] * base
    # Translucent so that tokens on the far side show through, faded.
    img[..., 3] = np.where(inside, 0.78, 0.0)
    return img
