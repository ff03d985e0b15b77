"""Block heterogeneity of the Transformer Hessian at initialisation (Ormaniec, Dangel & Singh, 2025, Figs. 1 and 4).

Heatmap of log10 |H| for the whole 1-layer transformer (d_model = d_head = 16, d_mlp 64, 3836 parameters,
exact dense Hessian) with block boundaries, and histograms of the |entries| of the W_Q and W_V blocks for
softmax versus linear attention. The paper's setting is small, so the default is the paper's setting
(``--full`` is accepted and changes nothing); about 20 s on an idle 2-core machine. Results go to HDF5 first (a rerun
with the same settings reuses them), the two PNGs are drawn from that file, next to it.

    python -m simulations.hessian_heterogeneity [--d-model 16] [--out results/hessian_heterogeneity]

* Heatmap: the exact dense Hessian of the whole 1-layer transformer (d_model = d_head = 16, d_mlp 64, no
  LayerNorm, seed 1234, CE on the answer digits, one batch of 64) over W_E, W_pos, W_Q, W_K, W_V, W_O, W_in,
  b_in, W_out, b_out, W_U, b_U (3836 parameters; attention biases excluded, as in the paper).
* Histograms: the dense W_Q and W_V blocks of H (256 x 256 each) of the same model on 8 batches of 8
  sequences, for softmax attention and for linear attention (residual 1, CE).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.ndimage import uniform_filter
from torch import Tensor
from tqdm.auto import tqdm

from hessian import CurvatureProblem
from hessian.addition import addition_data, answer_positions
from hessian.block_matrix import BlockMatrix
from hessian.losses import CrossEntropyLoss
from hessian.models import Transformer
from particles.io import ResultStore
from simulations.common.store import stored_config

from .common.cli import config_or_exit, integer, refuse_existing, set_threads, study_parser
from .common.figures import finish, panels
from .common.naming import result_path

KIND = "hessian_heterogeneity"
#: the attention kinds of the histograms, each a store key holding its W_Q and W_V blocks (printed in this order)
ATTENTIONS = ("linear", "softmax")
#: parameter order of the heatmap (the authors' order; attention biases excluded)
HEATMAP_BLOCKS = (
    "embed.W_E",
    "pos_embed.W_pos",
    "blocks.0.attn.W_Q",
    "blocks.0.attn.W_K",
    "blocks.0.attn.W_V",
    "blocks.0.attn.W_O",
    "blocks.0.mlp.W_in",
    "blocks.0.mlp.b_in",
    "blocks.0.mlp.W_out",
    "blocks.0.mlp.b_out",
    "unembed.W_U",
    "unembed.b_U",
)


@dataclass(frozen=True, kw_only=True)
class HeterogeneityConfig:
    """Sizes and seeds of the heterogeneity figures.

    Attributes:
        d_model: width (d_head = d_model, one head); d_mlp: MLP width.
        seed: model seed; data_seed: data seed.
        batch: sequences for the heatmap Hessian.
        hist_batches, hist_batch: batches x sequences for the histograms.
    """

    d_model: int = 16
    d_mlp: int = 64
    seed: int = 1234
    data_seed: int = 1234
    batch: int = 64
    hist_batches: int = 8
    hist_batch: int = 8

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            minimum = 0 if f.name.endswith("seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{f.name} must be an int >= {minimum}, got {value!r}")

    def label(self) -> str:
        """Readable head of the file name."""
        return f"heterogeneity_d={self.d_model}_seed={self.seed}_batch={self.batch}"


def _model(config: HeterogeneityConfig, attention: str) -> Transformer:
    a0, a1 = answer_positions()
    # read-out of the scored logits: the same Hessian as the full model with the position-selecting loss
    return Transformer(
        n_layers=1,
        d_model=config.d_model,
        d_head=config.d_model,
        d_mlp=config.d_mlp,
        attention=attention,
        readout=(a0 - 1, a1 - 1),
    )


def heatmap_hessian(
    config: HeterogeneityConfig, *, dtype: torch.dtype = torch.float64, progress: bool = False
) -> BlockMatrix:
    """The exact Hessian of the softmax model over ``HEATMAP_BLOCKS`` on one batch of ``config.batch``.

    Built 64 columns at a time (products with unit vectors), counted by a progress bar in columns."""
    a0, a1 = answer_positions()
    tokens = addition_data(config.batch, seed=config.data_seed)[0]
    model = _model(config, "softmax")
    params = model.init(seed=config.seed, dtype=dtype)
    problem = CurvatureProblem(model, CrossEntropyLoss(), params, tokens, tokens[:, a0:a1], HEATMAP_BLOCKS, dtype=dtype)
    H = problem.H
    if H.dim > 8192:
        raise ValueError(f"the heatmap Hessian has P = {H.dim} parameters, above 8192: use a smaller d_model")
    eye = torch.eye(H.dim, dtype=H.dtype)
    columns = []
    with tqdm(total=H.dim, desc="heatmap Hessian", unit="column", disable=not progress, leave=False) as bar:
        for start in range(0, H.dim, 64):
            columns.append(H.matmat(eye[:, start : start + 64]))
            bar.update(columns[-1].shape[1])
    return BlockMatrix(torch.cat(columns, dim=1), H.names, H.shapes)


def histogram_blocks(
    config: HeterogeneityConfig, attention: str, *, dtype: torch.dtype = torch.float64
) -> dict[str, Tensor]:
    """The dense W_Q and W_V diagonal blocks of H, ``{"Q": (p, p), "V": (p, p)}``, on the histogram batches."""
    a0, a1 = answer_positions()
    # 8 batches of 8 with equal sizes: the mean loss over the 64 sequences is the mean of the batch losses
    tokens = addition_data(config.hist_batch, num_batches=config.hist_batches, seed=config.data_seed)
    tokens = tokens.reshape(-1, tokens.shape[-1])
    model = _model(config, attention)
    params = model.init(seed=config.seed, dtype=dtype)
    names = ["blocks.0.attn.W_Q", "blocks.0.attn.W_V"]
    B = CurvatureProblem(model, CrossEntropyLoss(), params, tokens, tokens[:, a0:a1], names, dtype=dtype).H.dense()
    return {"Q": B.block(names[0], names[0]), "V": B.block(names[1], names[1])}


def store(config: HeterogeneityConfig, path: str | Path) -> ResultStore:
    """The result store of ``config`` at ``path`` (a file of another config is a ValueError)."""
    return ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})


def run(config: HeterogeneityConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Compute and save the heatmap Hessian and the histogram blocks, each piece unless already saved.

    Store keys: ``heatmap`` (``hessian`` (P, P) float32, as it is only displayed; ``names``, space-separated;
    ``boundaries`` (len(names) + 1,)) and one per attention in ``ATTENTIONS`` with ``Q`` and ``V`` (p, p).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = store(config, path)
    todo = [key for key in ("heatmap", *ATTENTIONS) if not results.done(key)]
    for key in tqdm(todo, desc="heterogeneity", disable=not progress):
        if key == "heatmap":
            H = heatmap_hessian(config, progress=progress)
            results.save(
                key,
                hessian=H.matrix.numpy().astype(np.float32),
                names=" ".join(H.names),
                boundaries=np.asarray(H.boundaries, dtype=np.int64),
            )
        else:
            results.save(key, **{block: M.numpy() for block, M in histogram_blocks(config, key).items()})
    return path


def load(path: str | Path) -> dict:
    """Read a heterogeneity file: dict with ``config``, ``hessian`` (P, P) float64, ``names``, ``boundaries``
    and ``blocks`` = {"softmax": {"Q": (p, p), "V": (p, p)}, "linear": {...}}."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    config = stored_config(path, HeterogeneityConfig, KIND)
    results = store(config, path)
    missing = [key for key in ("heatmap", *ATTENTIONS) if not results.done(key)]
    if missing:
        raise ValueError(f"{path} is not a complete {KIND} file: {missing} missing")
    heat = results.load("heatmap")
    return dict(
        config=config,
        hessian=heat["hessian"].astype(np.float64),
        names=heat["names"].split(" "),
        boundaries=heat["boundaries"],
        blocks={a: {b: results.load(a)[b] for b in ("Q", "V")} for a in ATTENTIONS},
    )


# ---------------------------------------------------------------------------------------------------------
# figures


def heatmap_path(path: str | Path) -> Path:
    return Path(path).with_name(Path(path).stem + "_heatmap.png")


def histograms_path(path: str | Path) -> Path:
    return Path(path).with_name(Path(path).stem + "_histograms.png")


def plot_heatmap(path: str | Path, *, fig=None, ax=None, save=True) -> Figure:
    """Heatmap of log10(|H| + FLOOR) of the whole model and of the attention weights, with block boundaries.

    Smoothed for display with a 5x5 box filter (the authors' cv.GaussianBlur with sigma 100 is nearly a box).
    Entries below ``FLOOR`` (exact zeros included) all take the floor's colour; the colour bar's lower
    triangle and its label say so.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the two panels into; None for a new one.
        ax: two axes to draw on instead.
        save: True for ``<stem>_heatmap.png`` beside the data, False for no file, or a path.
    """
    res = load(path)
    H = res["hessian"]
    names, bounds = res["names"], res["boundaries"]
    attn = [i for i, n in enumerate(names) if ".attn.W_" in n]
    lo, hi = bounds[attn[0]], bounds[attn[-1] + 1]
    panels_ = [
        (H, names, bounds, "whole model"),
        (H[lo:hi, lo:hi], [names[i] for i in attn], bounds[attn[0] : attn[-1] + 2] - lo, "W_Q, W_K, W_V, W_O"),
    ]
    imgs = [uniform_filter(np.log10(np.abs(M) + FLOOR), size=5, mode="nearest") for M, *_ in panels_]
    vmin, vmax = min(i.min() for i in imgs), max(i.max() for i in imgs)
    fig, axes = panels(1, 2, size=(15, 7.8), fig=fig, ax=ax)
    for a, img, (_, nm, bd, title) in zip(axes, imgs, panels_):
        im = a.imshow(img, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        for x in bd[1:-1]:
            a.axhline(x - 0.5, color="white", ls="--", lw=0.6)
            a.axvline(x - 0.5, color="white", ls="--", lw=0.6)
        centres = (np.asarray(bd[:-1]) + np.asarray(bd[1:])) / 2
        short = [n.split(".")[-1] for n in nm]
        a.set_xticks(centres, short, rotation=90, fontsize=7)
        a.set_yticks(centres, short, fontsize=7)
        a.set_title(f"log10 |H|: {title}")
    floored = float(np.mean(np.abs(H) < FLOOR))
    fig.colorbar(
        im,
        ax=axes,
        shrink=0.8,
        extend="min",
        label=f"log10(|H| + {FLOOR:g}), 5x5 box mean: entries < {FLOOR:g} ({floored:.1%}) sit at the floor",
    )
    c = res["config"]
    fig.suptitle(
        f"Hessian of the 1-layer transformer at initialisation, d_model {c.d_model}, d_mlp {c.d_mlp}, "
        f"seed {c.seed}, batch {c.batch} ({H.shape[0]} parameters); colour clipped below {FLOOR:g}",
        fontsize=10,
    )
    return finish(fig, save, heatmap_path(path), dpi=110)


#: Added to |H| before the log of the heatmap: exact zeros (and anything below) show at log10 FLOOR.
FLOOR = 1e-6


def _log_bins(values: np.ndarray, num: int) -> np.ndarray:
    v = np.abs(values[np.isfinite(values)])
    lo = max(1e-8, v[v > 0].min()) if np.any(v > 0) else 1e-8
    return np.logspace(np.log10(lo), np.log10(max(v.max(), lo * 10)), num + 1)


def plot_histograms(path: str | Path, *, fig=None, ax=None, save=True) -> Figure:
    """Histograms of |entries| of the W_Q and W_V blocks of H: softmax (left) and linear over softmax (right).

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the 2 x 2 panels into; None for a new one.
        ax: four axes to draw on instead (row by row).
        save: True for ``<stem>_histograms.png`` beside the data, False for no file, or a path.
    """
    res = load(path)
    soft, lin = res["blocks"]["softmax"], res["blocks"]["linear"]
    fig, axes = panels(2, 2, size=(12, 7), fig=fig, ax=ax)
    for i, (block, bins) in enumerate((("V", 50), ("Q", 30))):
        a = axes[i, 0]
        vals = np.abs(soft[block]).ravel()
        a.hist(vals, bins=_log_bins(vals, bins), color="C0")
        a.set_title(f"softmax attention: |H(W_{block}, W_{block})| entries, median {np.median(vals):.1e}")
        a = axes[i, 1]
        lv = np.abs(lin[block]).ravel()
        edges = _log_bins(np.concatenate([vals, lv]), 50)
        a.hist(vals, bins=edges, color="C0", alpha=0.35, label="softmax")
        a.hist(lv, bins=edges, color="C3", alpha=0.9, label="linear attention")
        a.set_title(f"linear attention: |H(W_{block}, W_{block})|, median {np.median(lv):.1e}")
        a.legend(fontsize=8)
        for a in axes[i]:
            a.set_xscale("log")
            a.set_xlabel("|entry|")
            a.set_ylabel("count")
    return finish(fig, save, histograms_path(path), dpi=110)


def plot(path: str | Path, *, save=True) -> tuple[Figure, Figure]:
    """Both figures (heatmap, histograms); ``save`` True writes each beside the data, False none."""
    return plot_heatmap(path, save=save), plot_histograms(path, save=save)


# ---------------------------------------------------------------------------------------------------------
# command line


#: Time measured on the 2-core development machine (one core's worth; default).
TIMING = "default ~20 s"


def build_parser():
    p = study_parser(
        "hessian_heterogeneity", __doc__, seed=1234, seed_help="seed of the model's weights", timing=TIMING, full=False
    )
    p.add_argument("--d-model", type=integer(1), default=16, help="model width")
    p.add_argument("--d-mlp", type=integer(1), default=None, help="MLP width (default: 4 d_model)")
    p.add_argument("--batch", type=integer(1), default=64, help="sequences for the heatmap")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def config_from_args(args) -> HeterogeneityConfig:
    d_mlp = 4 * args.d_model if args.d_mlp is None else args.d_mlp
    return HeterogeneityConfig(d_model=args.d_model, d_mlp=d_mlp, seed=args.seed, batch=args.batch)


def output_paths(args):
    """The results file of the command line's config and the files drawn from it."""
    config = config_from_args(args)
    path = result_path(args.out, config.label(), config)
    return path, [heatmap_path(path), histograms_path(path)]


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    path = run(config_from_args(args), path, progress=not args.no_progress)
    plot(path)
    heat, hist = heatmap_path(path), histograms_path(path)
    res = load(path)
    H, b = res["hessian"], res["boundaries"]
    print("block   Frobenius norm of the diagonal block   median |entry|")
    for i, name in enumerate(res["names"]):
        B = H[b[i] : b[i + 1], b[i] : b[i + 1]]
        print(f"{name:22s} {np.linalg.norm(B):12.3e} {np.median(np.abs(B)):14.3e}")
    for attention, blocks in res["blocks"].items():
        q, v = (np.median(np.abs(blocks[k])) for k in ("Q", "V"))
        print(
            f"{attention:8s} attention, histogram batches: median |H_QQ| {q:.2e}, median |H_VV| {v:.2e}, "
            f"ratio V/Q {v / q:.1e}"
        )
    print(f"saved {path}, {heat} and {hist}")
    return path


if __name__ == "__main__":
    main()
