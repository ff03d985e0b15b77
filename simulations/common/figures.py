"""Figure conventions of the studies: a matplotlib ``Figure`` built without pyplot (no global
backend switch, safe in threads and notebooks), saved as PNG next to the data it shows.

Every ``plot`` function of a study draws through :func:`panels` and ends with :func:`finish`, so
it accepts the same three keywords:

- ``fig``: a ``Figure`` or ``SubFigure`` to draw into (e.g. ``plt.figure()`` in a notebook),
- ``ax``: the axes themselves (one ``Axes`` for a one-panel figure, else as many as it has panels),
- ``save``: True (the PNG beside the data file), False (no file: just return the figure) or a path,

and returns the ``Figure`` it drew on, which a notebook displays inline.
"""

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase

DPI = 120


def new_figure(width, height, **kwargs):
    """A ``Figure`` of ``width`` x ``height`` inches, laid out with constrained layout."""
    kwargs.setdefault("layout", "constrained")
    return Figure(figsize=(width, height), dpi=DPI, **kwargs)


def panels(nrows=1, ncols=1, *, size, fig=None, ax=None, squeeze=True, layout="constrained", **subplots_kw):
    """The figure and the grid of axes a plot draws into.

    Args:
        nrows, ncols: the grid of panels.
        size: (width, height) in inches of a new figure.
        fig: a ``Figure`` or ``SubFigure`` to draw the grid into; None for a new one.
        ax: the axes to draw on instead of a new grid: one ``Axes`` when the grid has one panel, else
            a sequence (or array) of ``nrows * ncols`` axes, taken row by row. Overrides ``fig``.
        squeeze: as in ``Figure.subplots``: a lone panel comes back as an ``Axes``, a row or
            column as a 1-D array.
        layout: layout engine of a new figure (``None`` when the plot places its panels itself).
        **subplots_kw: passed to ``Figure.subplots`` (``sharex``, ``sharey``, ``subplot_kw``).

    Returns:
        (fig, axes): the figure holding the axes, and the axes shaped as ``Figure.subplots`` shapes them.

    Raises:
        TypeError: ``fig`` is not a figure, or ``ax`` holds something other than axes.
        ValueError: ``ax`` holds the wrong number of axes.
    """
    if ax is not None:
        flat = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
        if not all(isinstance(a, Axes) for a in flat):
            raise TypeError(f"ax must be a matplotlib Axes or a sequence of them, got {type(ax).__name__}")
        if len(flat) != nrows * ncols:
            raise ValueError(f"ax must hold {nrows * ncols} axes ({nrows} x {ncols} panels), got {len(flat)}")
        grid = np.empty(nrows * ncols, dtype=object)
        grid[:] = flat
        grid = grid.reshape(nrows, ncols)
        axes = grid.item() if squeeze and grid.size == 1 else (np.squeeze(grid) if squeeze else grid)
        if squeeze and isinstance(axes, np.ndarray) and axes.ndim == 0:
            axes = axes.item()
        return flat[0].figure, axes
    if fig is None:
        fig = new_figure(*size, layout=layout)
    elif not isinstance(fig, FigureBase):
        raise TypeError(f"fig must be a matplotlib Figure or SubFigure, got {type(fig).__name__}")
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **subplots_kw)


def figure_path(data_path, suffix=".png"):
    """Where the figure of a data file goes: beside it, same stem."""
    return Path(data_path).with_suffix(suffix)


def save_figure(fig, path, *, dpi=DPI):
    """Write ``fig`` (or the figure holding a ``SubFigure``) to ``path`` (PNG) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while not isinstance(fig, Figure):  # a SubFigure saves through the figure that holds it
        fig = fig.figure
    fig.savefig(path, dpi=dpi)
    return path


def finish(fig, save, default_path, *, dpi=DPI):
    """End a plot: save ``fig`` as ``save`` asks and return it.

    Args:
        fig: the drawn figure.
        save: True to write ``default_path``, False or None to write nothing, or a path to write.
        default_path: the PNG beside the data file.

    Raises:
        TypeError: ``save`` is neither a bool, None nor a path.
    """
    if save is None or save is False:
        return fig
    if save is True:
        save_figure(fig, default_path, dpi=dpi)
    elif isinstance(save, (str, Path)):
        save_figure(fig, save, dpi=dpi)
    else:
        raise TypeError(f"save must be True, False or a file path, got {type(save).__name__}")
    return fig


def count_colours(max_count, cmap="magma"):
    """A discrete colour scale for counts 1..``max_count``: one colour per count up to 6, then bins
    about 1.4 times wider each (so 2 and 3 differ at a glance and 32 still fits).

    Returns:
        (cmap, norm, ticks, labels): a ``ListedColormap`` and ``BoundaryNorm`` for ``pcolormesh``, and
        the tick positions (bin centres) and labels ("7-8") of its colour bar. A median between two
        counts (x.5) falls in the upper one's bin.
    """
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    max_count = max(int(np.ceil(max_count)), 2)
    lows = [1]
    while lows[-1] <= max_count:
        lows.append(lows[-1] + 1 if lows[-1] < 6 else max(lows[-1] + 1, int(round(lows[-1] * 1.4))))
    lows[-1] = max_count + 1
    edges = np.array(lows, dtype=float) - 0.5  # bin k holds the counts lows[k] .. lows[k+1] - 1
    colours = colormaps[cmap](np.linspace(0.1, 0.95, len(edges) - 1))
    ticks = (edges[:-1] + edges[1:]) / 2
    labels = [str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in zip(lows[:-1], lows[1:])]
    return ListedColormap(colours), BoundaryNorm(edges, len(edges) - 1), ticks, labels
