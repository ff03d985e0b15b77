r"""Inner-product histograms of token configurations, layer by layer (Figure 1 of
Geshkovski et al. (2023)), for the hidden states of a transformer or for the particle model.

For each layer l = 0..L the n tokens x_1..x_n of one configuration are unit vectors
(``normalize_tokens`` of hidden states h_i: x_i = h_i / |h_i|), and all n^2 entries
<x_i, x_j> of the Gram matrix, diagonal included (as in the authors' albert.ipynb), are
binned on edges shared by every layer. Clustering shows as mass moving toward 1.

``particle_states`` runs the particle model at "layer" times from a given configuration, so
that a model's layers and the dynamics can be binned on the same edges. Reading real models
and the figure are the study ``simulations.histograms``.
"""

import dataclasses

import numpy as np

from ._simulate import simulate
from .checks import as_float_array, check_int, check_real

__all__ = [
    "InnerProductHistograms",
    "normalize_tokens",
    "gram_entries",
    "histogram_edges",
    "inner_product_histograms",
    "particle_states",
]

# The authors' plotting window; the edges grow past it when some inner product falls outside.
LOW, HIGH = -0.3, 1.05
# Bounds on the number of Freedman-Diaconis bins over [LOW, HIGH].
MIN_BINS, MAX_BINS = 20, 200


@dataclasses.dataclass(frozen=True, kw_only=True)
class InnerProductHistograms:
    """Per-layer histograms of Gram entries on shared edges.

    Attributes:
        edges: (B + 1,) bin edges.
        counts: (L + 1, B) int64 counts; each row sums to ``n_pairs``.
        mean: (L + 1,) mean of the binned entries per layer.
        median: (L + 1,) median of the binned entries per layer.
        n_tokens: number of tokens n.
        diagonal: whether the n diagonal entries <x_i, x_i> = 1 are included.
        n_pairs: entries per layer, n^2 with the diagonal, n(n - 1) without.
    """

    edges: np.ndarray
    counts: np.ndarray
    mean: np.ndarray
    median: np.ndarray
    n_tokens: int
    diagonal: bool
    n_pairs: int

    def density(self):
        """(L + 1, B) counts / (n_pairs * bin width): each row integrates to 1."""
        return self.counts / (self.n_pairs * np.diff(self.edges))


def normalize_tokens(h):
    """x_i = h_i / |h_i| for every token of every layer: (..., n, d) -> (..., n, d)."""
    h = as_float_array("h", h).astype(np.float64)
    norms = np.linalg.norm(h, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("h must have no zero token vector (it has no direction)")
    return h / norms


def gram_entries(x, *, diagonal=True):
    """The Gram entries <x_i, x_j> of each configuration, flattened.

    Args:
        x: (..., n, d) unit vectors.
        diagonal: include the n entries i = j (the authors do).

    Returns:
        (..., n^2) with the diagonal, (..., n(n - 1)) without, row-major over (i, j).
    """
    x = as_float_array("x", x).astype(np.float64)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., n, d), got shape {x.shape}")
    n = x.shape[-2]
    gram = x @ np.swapaxes(x, -1, -2)
    flat = gram.reshape(gram.shape[:-2] + (n * n,))
    if diagonal:
        return flat
    off = ~np.eye(n, dtype=bool).reshape(-1)
    return flat[..., off]


def histogram_edges(entries, bins="fd"):
    """Bin edges shared by all layers.

    The range is the authors' [-0.3, 1.05], widened to hold every entry (so counts always
    sum to the number of entries). ``bins="fd"`` picks the Freedman-Diaconis width
    2 IQR N^{-1/3} of each layer, takes the median over layers, and keeps the number of
    bins over [-0.3, 1.05] within [20, 200].

    Args:
        entries: (layers, N) Gram entries.
        bins: "fd" or the number of bins (int >= 1).

    Returns:
        (B + 1,) float64 increasing edges.
    """
    entries = as_float_array("entries", entries)
    if entries.ndim != 2 or entries.shape[1] < 1:
        raise ValueError(f"entries must have shape (layers, N) with N >= 1, got {entries.shape}")
    low = min(LOW, float(entries.min()))
    high = max(HIGH, float(entries.max()))
    if isinstance(bins, str):
        if bins != "fd":
            raise ValueError(f"bins must be 'fd' or a positive integer, got {bins!r}")
        q75, q25 = np.percentile(entries, [75, 25], axis=1)
        widths = 2.0 * (q75 - q25) * entries.shape[1] ** (-1.0 / 3.0)
        width = float(np.median(widths))
        span = HIGH - LOW
        n_bins = MAX_BINS if width <= 0 else int(np.clip(np.ceil(span / width), MIN_BINS, MAX_BINS))
        width = span / n_bins
        # Same width outside [LOW, HIGH] when the range had to grow.
        n_bins = int(np.ceil((high - low) / width - 1e-9))
        return low + width * np.arange(n_bins + 1)
    n_bins = check_int("bins", bins, low=1)
    return np.linspace(low, high, n_bins + 1)


def inner_product_histograms(x, *, bins="fd", diagonal=True, edges=None):
    """Per-layer histograms of the Gram entries of unit token vectors.

    Args:
        x: (L + 1, n, d) unit vectors (``normalize_tokens`` of hidden states), one
            configuration per layer.
        bins: "fd" or an int, see ``histogram_edges``; ignored when ``edges`` is given.
        diagonal: include the entries <x_i, x_i> = 1.
        edges: (B + 1,) edges to use instead (e.g. the model's, for the particles); they
            must cover every entry.

    Returns:
        ``InnerProductHistograms``.
    """
    x = as_float_array("x", x)
    if x.ndim != 3 or x.shape[1] < 2:
        raise ValueError(f"x must have shape (layers, n, d) with n >= 2, got shape {x.shape}")
    entries = gram_entries(x, diagonal=diagonal)
    if edges is None:
        edges = histogram_edges(entries, bins)
    else:
        edges = as_float_array("edges", edges).astype(np.float64)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"edges must be a 1-D increasing array, got shape {edges.shape}")
        if entries.min() < edges[0] or entries.max() > edges[-1]:
            raise ValueError(
                f"edges must cover every entry, got [{edges[0]:g}, {edges[-1]:g}] "
                f"for entries in [{entries.min():g}, {entries.max():g}]"
            )
    counts = np.stack([np.histogram(e, bins=edges)[0] for e in entries]).astype(np.int64)
    return InnerProductHistograms(
        edges=edges,
        counts=counts,
        mean=entries.mean(axis=1),
        median=np.median(entries, axis=1),
        n_tokens=x.shape[1],
        diagonal=bool(diagonal),
        n_pairs=entries.shape[1],
    )


def particle_states(x0, *, layers, beta=1.0, layer_time=0.1, steps_per_layer=10, dynamics="SA", progress=False):
    """The particle model at "layer" times t = l * layer_time, l = 0..layers.

    Runs ``particles.simulate`` with Q = K = V = I (RK4) from the given tokens, typically
    the model's normalised embedding output, so both start from the same configuration.

    Args:
        x0: (n, d) unit vectors.
        layers: number of layers L >= 1.
        beta: inverse temperature.
        layer_time: time per layer, > 0.
        steps_per_layer: RK4 steps per layer.
        dynamics: "SA" or "USA".
        progress: progress bar.

    Returns:
        (ts, xs): (L + 1,) times and (L + 1, n, d) states.
    """
    layers = check_int("layers", layers, low=1)
    layer_time = check_real("layer_time", layer_time, low=0.0, low_inclusive=False)
    steps_per_layer = check_int("steps_per_layer", steps_per_layer, low=1)
    traj = simulate(
        np.ascontiguousarray(x0, dtype=np.float64),
        beta=beta,
        t_max=layers * layer_time,
        dt=layer_time / steps_per_layer,
        dynamics=dynamics,
        method="rk4",
        save_every=steps_per_layer,
        progress=progress,
    )
    return np.asarray(traj.ts), np.asarray(traj.xs)
