"""Curvature of the full pre-LN Transformer block: group block map and growth with the embedding scale sigma.

One-layer pre-LN transformer (LN1 -> attention -> residual -> LN2 -> FFN -> residual, then ln_final and the
unembedding) on 5-digit addition, cross-entropy on the answer digits. For the groups Q, K, V, O, LN1, LN2, W1,
b1, W2, b2 the exact dense Hessian (float64 autograd) gives the Frobenius norm of every group-pair block of
H, H_o and H_f, at initialisation (heatmap with numbers) and for every sigma of the grid after redrawing the
token and position embeddings ~ N(0, sigma^2) (growth figure, slope table against the derived large-sigma
exponents). The LN2 and FFN blocks are also rebuilt from the closed forms (hessian.closed_form) and compared
with autograd. Points go to HDF5 as they finish (a rerun skips them); figures are drawn from the file.

Quick default: d_model 8, d_mlp 32, 16 sequences, 10 sigmas, 2 seeds (22 dense 840 x 840 splits: about
20 s on an idle 2-core machine).
``--full``: d_model 16, d_mlp 64 (the heterogeneity heatmap's model, 3216 block parameters), 64 sequences,
20 sigmas, 5 seeds (dense 3216 x 3216 Hessians; about an hour on 2 cores).

    python -m simulations.block_curvature [--full] [--norm none] [--out results/block_curvature]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from tqdm.auto import tqdm

from hessian import CurvatureProblem
from hessian.block_assembly import assembled_feedforward_blocks
from hessian.block_groups import block_groups, block_hessian, split_maps
from hessian.kinds import KINDS
from hessian.models import Transformer
from particles.checks import check_int
from particles.io import ResultStore
from simulations._addition_model import addition_problem, addition_transformer
from simulations._sigma_grids import sigma_grid
from simulations.common.cli import FullDefault, config_or_exit, integer, refuse_existing, set_threads, study_parser
from simulations.common.figures import finish, panels
from simulations.common.fits import compare_with_theory, fit_power_law
from simulations.common.store import stored_config

KIND = "hessian_block_curvature"
#: a block of H_f below this fraction of the H block is float64 round-off of H - H_o (identically zero in theory)
ZERO_RTOL = 1e-10


@dataclass(frozen=True, kw_only=True)
class BlockConfig:
    """The block-curvature experiment.

    Attributes:
        d_model: width (d_head = d_model, one head); d_mlp: FFN width.
        layer_norm: pre-LN block (True, the issue's block) or no LayerNorm.
        batch: sequences in the one data batch (seed ``data_seed``).
        grid, num_sigmas: sigma grid (``simulations._sigma_grids.sigma_grid``).
        repeats: fresh model seeds ``model_seed + r``.
        embedding: "fresh" (redraw the token and position embeddings ~ N(0, sigma^2) at every sigma, the
            authors' protocol) or "rescaled" (sigma times one unit draw per repeat).
    """

    d_model: int = 8
    d_mlp: int = 32
    layer_norm: bool = True
    batch: int = 16
    grid: str = "log"
    num_sigmas: int = 10
    repeats: int = 2
    embedding: str = "fresh"
    data_seed: int = 1234
    model_seed: int = 1234

    def __post_init__(self) -> None:
        for name in ("d_model", "d_mlp", "batch", "num_sigmas", "repeats"):
            check_int(name, getattr(self, name), low=2 if name == "num_sigmas" else 1)
        if not isinstance(self.layer_norm, bool):
            raise TypeError(f"layer_norm must be a bool, got {type(self.layer_norm).__name__}")
        sigma_grid(self.grid, self.num_sigmas)  # validates grid
        if self.embedding not in ("fresh", "rescaled"):
            raise ValueError(f"embedding must be 'fresh' or 'rescaled', got {self.embedding!r}")

    @property
    def sigmas(self) -> np.ndarray:
        return sigma_grid(self.grid, self.num_sigmas)

    def model(self) -> Transformer:
        return addition_transformer(d_model=self.d_model, d_mlp=self.d_mlp, layer_norm=self.layer_norm)

    def name(self) -> str:
        norm = "pre" if self.layer_norm else "none"
        return (
            f"block_norm={norm}_d={self.d_model}_mlp={self.d_mlp}_batch={self.batch}_{self.grid}{self.num_sigmas}"
            f"_rep={self.repeats}_{self.embedding}"
        )


def _embed(params: dict[str, Tensor], sigma: float, seed: int, base: dict[str, Tensor] | None) -> dict[str, Tensor]:
    out = dict(params)
    if base is not None:  # rescaled: one unit draw per repeat
        for n in ("embed.W_E", "pos_embed.W_pos"):
            out[n] = sigma * base[n]
        return out
    gen = torch.Generator().manual_seed(seed)
    for n in ("embed.W_E", "pos_embed.W_pos"):
        out[n] = sigma * torch.randn(params[n].shape, generator=gen, dtype=params[n].dtype)
    return out


def _store_config(config: BlockConfig) -> dict:
    groups = ",".join(block_groups(config.model()))
    return {"kind": KIND, "groups": groups, **dataclasses.asdict(config)}


def run(config: BlockConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Group norm maps at initialisation and along the sigma grid, to HDF5 point by point (resumable).

    Store (``particles.io.ResultStore``): key ``init_rep={r}`` and ``sigma={k}_rep={r}`` with dataset
    ``maps`` (3, G, G) (H, H_o, H_f), attrs ``sigma`` (NaN at init) and ``seconds``; the config (with the
    comma-separated ``groups``) under ``/parameters``.
    A finished key is skipped on rerun.

    Returns:
        The HDF5 path.
    """
    if not isinstance(config, BlockConfig):
        raise TypeError(f"config must be a BlockConfig, got {type(config).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = config.model()
    groups = block_groups(model)
    store = ResultStore(path, _store_config(config))
    tokens, target, loss = addition_problem(model, config.batch, seed=config.data_seed)
    work = [(None, r) for r in range(config.repeats)] + [
        (k, r) for r in range(config.repeats) for k in range(config.num_sigmas)
    ]
    for k, r in tqdm(work, desc="block curvature", disable=not progress):
        key = f"init_rep={r}" if k is None else f"sigma={k:02d}_rep={r}"
        if store.done(key):
            continue
        t0 = time.perf_counter()
        params = model.init(seed=config.model_seed + r)
        sigma = float("nan")
        if k is not None:
            sigma = float(config.sigmas[k])
            base = None
            if config.embedding == "rescaled":
                base = _embed(params, 1.0, 10_000 + r, None)
            params = _embed(params, sigma, 1_000_003 * (r + 1) + k, base)
        split, _ = block_hessian(model, params, tokens, target, loss)
        store.save(key, maps=split_maps(split, groups), sigma=sigma, seconds=time.perf_counter() - t0)
    return path


@dataclass(frozen=True)
class BlockResults:
    """A block-curvature file in memory.

    Attributes:
        config: the BlockConfig; groups: group names (G,); sigmas: (S,).
        init: (R, 3, G, G) maps at initialisation; maps: (S, R, 3, G, G) along the grid (NaN if missing).
        seconds: total compute seconds.
    """

    config: BlockConfig
    groups: tuple[str, ...]
    sigmas: np.ndarray
    init: np.ndarray
    maps: np.ndarray
    seconds: float

    def diagonal(self) -> np.ndarray:
        """(S, R, 3, G) Frobenius norms of the diagonal group blocks."""
        return np.diagonal(self.maps, axis1=-2, axis2=-1)


def load(path: str | Path) -> BlockResults:
    """Read a block-curvature file (missing points are NaN)."""
    config = stored_config(path, BlockConfig, KIND)
    store = ResultStore(path, _store_config(config))
    groups = tuple(block_groups(config.model()))
    S, R, G = config.num_sigmas, config.repeats, len(groups)
    init, maps = np.full((R, 3, G, G), np.nan), np.full((S, R, 3, G, G), np.nan)
    seconds = 0.0
    done = set(store.keys())
    for r in range(R):
        if f"init_rep={r}" in done:
            v = store.load(f"init_rep={r}")
            init[r], seconds = v["maps"], seconds + float(v["seconds"])
        for k in range(S):
            if f"sigma={k:02d}_rep={r}" in done:
                v = store.load(f"sigma={k:02d}_rep={r}")
                maps[k, r], seconds = v["maps"], seconds + float(v["seconds"])
    return BlockResults(config, groups, config.sigmas, init, maps, seconds)


def large_sigma_exponent(group: str, kind: str, layer_norm: bool = True) -> float | None:
    """Predicted log-log slope of a diagonal group block of the pre-LN block for large sigma (derived here).

    Once the raw residual stream (scale sigma) dominates, every LayerNorm input inside the block is
    normalised (attention and FFN see sigma-independent inputs) and only ln_final sees the scale: its Jacobian
    is ~ 1/sigma and its Hessian ~ 1/sigma^2, the logit gradient stays O(1). So H_o ~ sigma^-2 for every group;
    H_f ~ sigma^-1 where the block output is curved in the group (softmax: Q, K and LN1, whose gain and bias
    move the attention input), and ~ sigma^-2 where it is linear or piecewise linear (V, O, LN2 through a ReLU
    FFN, W1, b1, W2, b2), since then only ln_final's Hessian contributes; H follows its slower part. Without
    LayerNorm there is no prediction (None).
    """
    if not layer_norm:
        return None
    curved = group in ("Q", "K", "LN1")
    if kind == "H_o":
        return -2.0
    return -1.0 if curved else -2.0


def _fit(sigmas: np.ndarray, values: np.ndarray, keep: np.ndarray):
    return fit_power_law(sigmas[keep], values[keep])


def growth_table(results: BlockResults, *, sigma_small: float = 0.1, sigma_large: float = 1.0) -> list[dict]:
    """Fitted log-log slopes of every diagonal group block against sigma (repeat means), small and large sigma.

    Args:
        results: ``load`` output.
        sigma_small: fit ``sigma <= sigma_small`` (predicted slope 0 under pre-LN: LN(sX) = LN(X) and the
            block outputs dominate the stream).
        sigma_large: fit ``sigma >= sigma_large`` (predicted ``large_sigma_exponent``).

    Returns:
        One dict per (group, kind): group, kind, slope_small, ci_small, slope_large, ci_large, theory_large,
        zero (the block is round-off: <= ZERO_RTOL of the group's H block), norm_min, norm_max (ci: half-width
        of the 95% interval).
    """
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(results.diagonal(), axis=1)  # (S, 3, G)
    s = results.sigmas
    tol = 1 + 1e-12
    rows = []
    for g, group in enumerate(results.groups):
        scale = float(np.nanmax(mean[:, 0, g])) if np.isfinite(mean[:, 0, g]).any() else 0.0
        for q, kind in enumerate(KINDS):
            v = mean[:, q, g]
            # H_f = H - H_o of a block on which it vanishes (piecewise-linear path) is float64 round-off, not a trend
            zero = bool(np.nanmax(v) <= ZERO_RTOL * scale) if np.isfinite(v).any() else True
            ok = np.isfinite(v) & (v > 0)
            small = _fit(s, v, ok & (s <= sigma_small * tol))
            large = _fit(s, v, ok & (s * tol >= sigma_large))
            rows.append(
                dict(
                    group=group,
                    kind=kind,
                    slope_small=small.slope,
                    ci_small=small.ci,
                    slope_large=large.slope,
                    ci_large=large.ci,
                    theory_large=large_sigma_exponent(group, kind, results.config.layer_norm),
                    zero=zero,
                    norm_min=float(np.min(v[ok])) if ok.any() else 0.0,
                    norm_max=float(np.max(v[ok])) if ok.any() else 0.0,
                )
            )
    return rows


def format_growth_table(rows: list[dict], sigma_small: float = 0.1, sigma_large: float = 1.0) -> str:
    """Plain-text table of ``growth_table`` rows (slopes with 95% intervals; '0 (round-off)' for vanishing blocks)."""
    small, large = "slope sigma<=" + format(sigma_small, "g"), "slope sigma>=" + format(sigma_large, "g")
    head = (
        f"{'group':6s} {'kind':4s} {small:>18s} {large:>18s} {'theory':>7s}  {'||.||_F range':20s}  large-sigma slope"
    )
    lines = [head]
    for row in rows:
        if row["zero"] or not row["norm_max"] > 0:
            name = f"{row['group']:6s} {row['kind']:4s}"
            lines.append(f"{name} {'0 (round-off)':>18s} {'':>18s} {'':>7s}  <= {row['norm_max']:.1e}")
            continue
        th = "-" if row["theory_large"] is None else f"{row['theory_large']:g}"
        verdict = "no derived exponent"
        if row["theory_large"] is not None:
            low, high = row["slope_large"] - row["ci_large"], row["slope_large"] + row["ci_large"]
            verdict = compare_with_theory(row["theory_large"], low, high)[1]
        lines.append(
            f"{row['group']:6s} {row['kind']:4s} {row['slope_small']:8.2f} +- {row['ci_small']:5.2f} "
            f"{row['slope_large']:8.2f} +- {row['ci_large']:5.2f} {th:>7s}  "
            f"{row['norm_min']:.2e} .. {row['norm_max']:.2e}  {verdict}"
        )
    return "\n".join(lines)


def assembly_error(config: BlockConfig) -> float:
    """Largest |closed form - autograd| over the LN2 and FFN blocks at initialisation (seed model_seed)."""
    model = config.model()
    params = model.init(seed=config.model_seed)
    tokens, target, loss = addition_problem(model, config.batch, seed=config.data_seed)
    blocks = assembled_feedforward_blocks(model, params, tokens, target, loss)
    names = sorted({a for a, _ in blocks}, key=list(params).index)
    H = CurvatureProblem(model, loss, params, tokens, target, names).H.dense()
    return max(float((B - H.block(a, b)).abs().max()) for (a, b), B in blocks.items())


# ---------------------------------------------------------------------------------------------------------
# figures (drawn from the HDF5 file)


def _beside(path: str | Path, suffix: str) -> Path:
    path = Path(path)
    return path.with_name(path.stem + suffix)


def plot_map(path: str | Path, *, fig=None, ax=None, save=True) -> Figure:
    """Heatmaps of log10 ||H[g, g']||_F for H, H_o, H_f at initialisation (mean over repeats), numbers in the
    cells; saved as ``<stem>_map.png``.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the panels into; None for a new one.
        ax: the axes to draw on instead (three: H, H_o, H_f).
        save: True for the PNG beside the data, False for no file, or a path.
    """
    res = load(path)
    with np.errstate(invalid="ignore"):
        M = np.nanmean(res.init, axis=0)  # (3, G, G)
    M[2] = np.where(M[2] <= ZERO_RTOL * M[0], 0.0, M[2])  # round-off of H - H_o where H_f vanishes
    G = len(res.groups)
    logs = np.log10(np.where(M > 0, M, np.nan))
    finite = logs[np.isfinite(logs)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (-1, 1)
    fig, axes = panels(1, 3, size=(18, 5.8), fig=fig, ax=ax)
    for ax, q in zip(axes, range(3)):
        im = ax.imshow(logs[q], cmap="viridis", vmin=vmin, vmax=vmax)
        for i in range(G):
            for j in range(G):
                v = M[q, i, j]
                text = "0" if v == 0 else f"{v:.1e}".replace("e-0", "e-").replace("e+0", "e")
                dark = not np.isfinite(logs[q, i, j]) or logs[q, i, j] < (vmin + vmax) / 2
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color="white" if dark else "black")
        ax.set_xticks(range(G), res.groups)
        ax.set_yticks(range(G), res.groups)
        ax.set_title(f"{KINDS[q]}: $\\|H[g, g']\\|_F$ (log10 colour)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="log10 Frobenius norm")
    c = res.config
    fig.suptitle(
        f"pre-LN block at initialisation: d_model {c.d_model}, d_mlp {c.d_mlp}, batch {c.batch}, "
        f"mean of {c.repeats} seeds (0: H_f <= 1e-10 of H, round-off)",
        fontsize=9,
    )
    return finish(fig, save, _beside(path, "_map.png"))


def plot_growth(path: str | Path, *, fig=None, ax=None, save=True) -> Figure:
    """Diagonal group blocks of H, H_o, H_f against sigma (log-log, mean over repeats), one curve per group;
    saved as ``<stem>_growth.png``.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the panels into; None for a new one.
        ax: the axes to draw on instead (three: H, H_o, H_f).
        save: True for the PNG beside the data, False for no file, or a path.
    """
    res = load(path)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(res.diagonal(), axis=1)
    mean[:, 2] = np.where(mean[:, 2] <= ZERO_RTOL * mean[:, 0], np.nan, mean[:, 2])  # vanishing H_f: not drawn
    fig, axes = panels(1, 3, size=(17, 5), fig=fig, ax=ax, sharey=True)
    colors = matplotlib.colormaps["tab10"](np.arange(len(res.groups)) % 10)
    for q, ax in enumerate(axes):
        for g, group in enumerate(res.groups):
            v = mean[:, q, g]
            if np.any(v > 0):
                ax.plot(res.sigmas, np.where(v > 0, v, np.nan), marker="o", ms=3, color=colors[g], label=group)
        if res.config.layer_norm:  # derived large-sigma slopes (large_sigma_exponent), anchored at the last point
            big = res.sigmas >= 1
            top = np.nanmax(mean[-1, q])
            for p, style in ((-1.0, ":"), (-2.0, "--")):
                ax.plot(
                    res.sigmas[big],
                    2 * top * (res.sigmas[big] / res.sigmas[-1]) ** p,
                    style,
                    color="k",
                    lw=1,
                    label=f"$\\sigma^{{{p:g}}}$ (derived)",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("embedding std $\\sigma$")
        ax.set_title(f"diagonal blocks of {KINDS[q]}")
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("$\\|H[g, g]\\|_F$")
    fig.suptitle(res.config.name().replace("_", " "), fontsize=9)
    return finish(fig, save, _beside(path, "_growth.png"))


def plot(path: str | Path, *, save=True) -> tuple[Figure, Figure]:
    """Both figures of the file (``plot_map``, ``plot_growth``); ``save`` True writes them beside it."""
    return plot_map(path, save=save), plot_growth(path, save=save)


# ---------------------------------------------------------------------------------------------------------
# command line


#: Time measured on the 2-core development machine (one core's worth; quick default).
TIMING = "quick default ~20 s; --full about an hour"


def build_parser() -> argparse.ArgumentParser:
    p = study_parser("block_curvature", __doc__, seed=1234, seed_help="seed of the model's weights", timing=TIMING)
    p.add_argument("--d-model", type=integer(1), default=FullDefault(8, 16), help="model width")
    p.add_argument("--d-mlp", type=integer(1), default=None, help="MLP width (default: 4 d_model)")
    p.add_argument("--batch", type=integer(1), default=FullDefault(16, 64), help="addition sequences")
    p.add_argument(
        "--num-sigmas", type=integer(2), default=FullDefault(10, 20), help="points of the log grid 10^[-2, 1] of sigma"
    )
    p.add_argument("--repeats", type=integer(1), default=FullDefault(2, 5), help="model seeds seed, seed + 1, ...")
    p.add_argument("--norm", choices=("pre", "none"), default="pre", help="pre-LN block or no LayerNorm")
    p.add_argument(
        "--embedding",
        choices=("fresh", "rescaled"),
        default="fresh",
        help="redraw the embeddings at every sigma, or rescale one draw",
    )
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> BlockConfig:
    d = args.d_model
    return BlockConfig(
        d_model=d,
        d_mlp=4 * d if args.d_mlp is None else args.d_mlp,
        layer_norm=args.norm == "pre",
        batch=args.batch,
        num_sigmas=args.num_sigmas,
        repeats=args.repeats,
        embedding=args.embedding,
        model_seed=args.seed,
    )


def output_paths(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """The results file of the command line's config and the files drawn from it."""
    path = args.out / f"{config_from_args(args).name()}.h5"
    return path, [_beside(path, s) for s in ("_map.png", "_growth.png", "_summary.txt", "_slopes.json")]


def summary(path: str | Path) -> tuple[str, list[dict]]:
    """The printed summary of a file and the rows of its slope table."""
    res = load(path)
    config = res.config
    rows = growth_table(res)
    init = np.nanmean(res.init, axis=0)
    G = len(res.groups)
    order = np.argsort(-np.diagonal(init[0]))
    lines = [config.name(), f"{res.seconds:.1f} s of Hessian computation", ""]
    lines.append(
        "diagonal blocks of H at initialisation, largest first: "
        + ", ".join(f"{res.groups[i]} {init[0, i, i]:.2e}" for i in order)
    )
    off = [(init[0, i, j], res.groups[i], res.groups[j]) for i in range(G) for j in range(i + 1, G)]
    off.sort(reverse=True)
    lines.append("largest off-diagonal group blocks of H: " + ", ".join(f"{a}-{b} {v:.2e}" for v, a, b in off[:5]))
    zeros = [
        f"{res.groups[i]}-{res.groups[j]}"
        for i in range(G)
        for j in range(i, G)
        if init[2, i, j] <= ZERO_RTOL * init[0, i, j]
    ]
    lines.append(
        f"group blocks with H_f = 0 up to round-off (<= {ZERO_RTOL:g} of the H block): "
        + (", ".join(zeros) if zeros else "none")
    )
    if config.layer_norm:
        lines.append(
            "closed-form assembly of the LN2 and FFN blocks vs autograd: "
            f"max abs deviation {assembly_error(config):.1e}"
        )
    lines += [
        "",
        "log-log slopes of the diagonal group blocks (mean over seeds) against sigma:",
        format_growth_table(rows),
    ]
    return "\n".join(lines) + "\n", rows


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    path = run(config_from_args(args), path, progress=not args.no_progress)
    plot(path)
    text, rows = summary(path)
    _beside(path, "_summary.txt").write_text(text)
    _beside(path, "_slopes.json").write_text(json.dumps(rows, indent=1))
    print(text)
    png_map, png_growth = _beside(path, "_map.png"), _beside(path, "_growth.png")
    print(f"saved {path}, {png_map}, {png_growth} and {path.stem}_summary.txt")
    return path


if __name__ == "__main__":
    main()
