"""Figure conventions of the studies: a matplotlib ``Figure`` built without pyplot (no global
backend switch, safe in threads and notebooks), saved as PNG next to the data it shows."""

from pathlib import Path

from matplotlib.figure import Figure

DPI = 120


def new_figure(width, height, **kwargs):
    """A ``Figure`` of ``width`` x ``height`` inches, laid out with constrained layout."""
    kwargs.setdefault("layout", "constrained")
    return Figure(figsize=(width, height), dpi=DPI, **kwargs)


def figure_path(data_path, suffix=".png"):
    """Where the figure of a data file goes: beside it, same stem."""
    return Path(data_path).with_suffix(suffix)


def save_figure(fig, path, *, dpi=DPI):
    """Write ``fig`` to ``path`` (PNG) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
