"""Growth of the self-attention (or MLP) Hessian blocks with the embedding scale sigma.

Ormaniec, Dangel & Singh (2025): for every sigma of the grid the token and position
embeddings are redrawn ~ N(0, sigma^2) and the Frobenius norms of the W_Q and W_V blocks of H, H_o and H_f
are measured for every layer (exactly for the last attention layer and for MLP layers, by Hutch++ below
the last attention layer). Every (sigma, repeat) point goes to HDF5 as it finishes (a rerun resumes); the
figure (mean +- s.e.m. over repeats, log-log, theory guide lines sigma^p) and the table of fitted slopes
are then made from the file, next to it.

Quick default: d_model 32, 12 sigmas, 3 repeats (seconds for one layer; a few minutes for deeper models,
whose lower layers use Hutch++). ``--full``: the paper's d_model 128, d_mlp 512, 20 repeats, batch 64,
20 sigmas (the 1-layer figure takes about 3-10 minutes on 2 shared cores; see benchmarks/bench_hessian_growth.py).

    python -m simulations.hessian_growth --full                              # 1 layer, softmax, CE
    python -m simulations.hessian_growth --full --layers 3                   # depth
    python -m simulations.hessian_growth --full --norm pre                   # pre-LayerNorm
    python -m simulations.hessian_growth --full --attention linear --layers 2  # MSE, residual 0, log_short
    python -m simulations.hessian_growth --full --model mlp --layers 4       # MSE, no activations
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from hessian.kinds import KINDS, check_kind
from particles.io import ResultStore
from simulations.common.store import stored_config

from ._growth_points import GrowthConfig, ModelKind, build, measure_point, point_params
from .common.cli import FullDefault, config_or_exit, integer, real, refuse_existing, set_threads, study_parser
from .common.figures import figure_path, finish, panels
from .common.fits import fit_power_law
from .common.naming import result_path

KIND = "hessian_growth"
#: column order of the paper's growth figures
PANEL_KINDS = ("H_o", "H_f", "H")
LABELS = {"H": "H", "H_o": "H_o (outer product)", "H_f": "H_f (functional)"}


def point_key(k: int, r: int) -> str:
    """Store key of sigma index ``k``, repeat ``r``."""
    return f"sigma_{k:02d}_repeat_{r:02d}"


def store(config: GrowthConfig, path: str | Path) -> ResultStore:
    """The result store of ``config`` at ``path`` (a file of another config is a ValueError)."""
    return ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})


def run(config: GrowthConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Run (or resume) a growth experiment, saving every (sigma, repeat) point as it finishes.

    Store keys ``sigma_{k:02d}_repeat_{r:02d}`` hold ``norms`` and ``stderr`` (n_layers, n_blocks, 3) (last
    axis H, H_o, H_f) and ``sigma``, ``seconds``, ``num_products``.

    Args:
        config: the experiment.
        path: HDF5 file; an existing file must hold the same config, its finished points are skipped.
        progress: show a tqdm bar.

    Returns:
        The path of the HDF5 file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = store(config, path)
    setup = build(config)
    done = set(results.keys())
    todo = [(r, k) for r in range(config.repeats) for k in range(config.num_sigmas) if point_key(k, r) not in done]
    for r, k in tqdm(todo, desc=config.name()[:40], disable=not progress):
        params = point_params(config, setup, r, k)
        t0 = time.perf_counter()
        norms, stderr, used = measure_point(config, setup, params, seed=1000 * r + k)
        results.save(
            point_key(k, r),
            norms=norms,
            stderr=stderr,
            sigma=float(config.sigmas[k]),
            seconds=time.perf_counter() - t0,
            num_products=int(used),
        )
    return path


@dataclass(frozen=True)
class GrowthResults:
    """A growth file in memory.

    Attributes:
        config: the GrowthConfig it was written with.
        sigmas: (S,) grid.
        norms, stderr: (S, R, n_layers, n_blocks, 3), NaN where a point is missing.
        seconds: (S, R) compute time per point (NaN if missing).
        num_products: (S, R) curvature products per point (-1 if missing).
    """

    config: GrowthConfig
    sigmas: np.ndarray
    norms: np.ndarray
    stderr: np.ndarray
    seconds: np.ndarray
    num_products: np.ndarray

    def mean(self) -> np.ndarray:
        """(S, n_layers, n_blocks, 3) mean over the finished repeats."""
        with np.errstate(invalid="ignore"):
            return np.nanmean(self.norms, axis=1)

    def sem(self) -> np.ndarray:
        """(S, n_layers, n_blocks, 3) standard error of the mean over repeats (scipy.stats.sem, ddof 1)."""
        n = np.sum(np.isfinite(self.norms), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanstd(self.norms, axis=1, ddof=1) / np.sqrt(n)

    @property
    def complete(self) -> bool:
        return bool(np.isfinite(self.seconds).all())


def load(path: str | Path) -> GrowthResults:
    """Read a growth file (missing points are NaN)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    config = stored_config(path, GrowthConfig, KIND)
    results = store(config, path)
    sigmas = config.sigmas
    S, R, L, B = len(sigmas), config.repeats, config.n_layers, len(config.blocks)
    norms, stderr = np.full((S, R, L, B, 3), np.nan), np.full((S, R, L, B, 3), np.nan)
    seconds, products = np.full((S, R), np.nan), np.full((S, R), -1, dtype=np.int64)
    done = set(results.keys())
    for k in range(S):
        for r in range(R):
            if point_key(k, r) in done:
                point = results.load(point_key(k, r))
                norms[k, r], stderr[k, r] = point["norms"], point["stderr"]
                seconds[k, r], products[k, r] = point["seconds"], point["num_products"]
    return GrowthResults(config, sigmas, norms, stderr, seconds, products)


# ---------------------------------------------------------------------------------------------------------
# theory exponents and slope fits


def theory_exponent(config: GrowthConfig, layer: int, block: str, kind: str) -> float | None:
    """Small-sigma exponent p of ``||block||_F ~ sigma^p`` derived from the closed forms of the blocks.

    None where the theory gives no power law (pre-LN) or the block is identically zero.
    """
    check_kind("kind", kind)
    last = layer == config.n_layers - 1
    if config.model == ModelKind.MLP:
        return None if kind == "H_f" else 2.0
    if config.layer_norm:
        return None
    if config.attention == "linear":
        if config.residual_scaling != 0:
            return None
        if kind == "H_f" and config.n_layers == 1:
            return None  # block-hollow: the diagonal H_f blocks vanish
        return 2.0 * 3**config.n_layers
    if block == "Q":
        return {"H": 5.0, "H_o": 6.0, "H_f": 5.0}[kind]
    if kind == "H_f":
        return None if last else 3.0
    return 2.0


def slope_table(results: GrowthResults, *, sigma_max: float = 1.0) -> list[dict]:
    """Fitted slopes (sigma <= sigma_max and whole grid) of the repeat means, next to the theory exponents.

    Args:
        results: from ``load``.
        sigma_max: upper end of the small-sigma fit (softmax saturates above 1).

    Returns:
        One dict per (layer, block, kind): layer, block, kind, theory, slope, ci, n, slope_all, ci_all, agrees.
    """
    config = results.config
    mean = results.mean()
    rows = []
    for l in range(config.n_layers):
        for b, block in enumerate(config.blocks):
            for q, kind in enumerate(KINDS):
                small = fit_power_law(results.sigmas, mean[:, l, b, q], x_max=sigma_max)
                whole = fit_power_law(results.sigmas, mean[:, l, b, q])
                p = theory_exponent(config, l, block, kind)
                # an exact power law has ci ~ 0: allow rounding-level deviations
                agrees = (
                    None
                    if p is None or not np.isfinite(small.slope)
                    else bool(abs(small.slope - p) <= max(small.ci, 1e-6))
                )
                rows.append(
                    dict(
                        layer=l,
                        block=block,
                        kind=kind,
                        theory=p,
                        slope=small.slope,
                        ci=small.ci,
                        n=small.num_points,
                        slope_all=whole.slope,
                        ci_all=whole.ci,
                        agrees=agrees,
                    )
                )
    return rows


def format_slope_table(rows: list[dict], sigma_max: float = 1.0) -> str:
    """Plain-text table of ``slope_table`` rows."""
    small = "slope (sigma<=" + format(sigma_max, "g") + ")"
    head = (
        f"{'layer':>5} {'block':>5} {'kind':>4} {'theory':>6} | {small:>16} {'95% CI':>8} {'n':>3} | "
        f"{'slope (all)':>11} {'95% CI':>8} | agrees"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        p = "-" if r["theory"] is None else f"{r['theory']:g}"
        ok = "-" if r["agrees"] is None else ("yes" if r["agrees"] else "NO")
        lines.append(
            f"{r['layer']:>5} {r['block']:>5} {r['kind']:>4} {p:>6} | {r['slope']:>16.3f} {r['ci']:>8.3f} "
            f"{r['n']:>3} | {r['slope_all']:>11.3f} {r['ci_all']:>8.3f} | {ok}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# figure


def plot(path: str | Path, *, fig=None, ax=None, save=True) -> Figure:
    """Growth figure: rows = blocks (V above Q, or W), columns = H_o, H_f, H; mean +- sem over repeats per layer.

    Dashed guide lines ``c sigma^p`` with the theory exponent p (``theory_exponent``), anchored at the
    smallest sigma of the first layer that has one; under pre-LN (no theory exponent) p is the whole-grid
    least-squares slope rounded to 0.1, as in the authors' notebook. A block that vanishes identically
    (e.g. the functional Hessian of W_V in the last layer) gets a blank panel that says so, not an empty
    log axis.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the panels into (one row per block, 3 columns); None for new.
        ax: the axes to draw on instead (row by row).
        save: True for the PNG beside ``path``, False for no file, or a path.
    """
    res = load(path)
    cfg = res.config
    blocks = list(cfg.blocks)[::-1]  # V on top, as in the paper
    fig, axes = panels(len(blocks), 3, size=(13, 3.6 * len(blocks)), fig=fig, ax=ax, squeeze=False)
    mean, sem = res.mean(), res.sem()
    s = res.sigmas
    log_x = cfg.grid.startswith("log")
    colors = colormaps["viridis"](np.linspace(0, 0.85, cfg.n_layers))
    for i, block in enumerate(blocks):
        b = cfg.blocks.index(block)
        for j, kind in enumerate(PANEL_KINDS):
            ax = axes[i, j]
            q = KINDS.index(kind)
            guide_done = set()
            for l in range(cfg.n_layers):
                m, e = mean[:, l, b, q], sem[:, l, b, q]
                if not np.any(np.isfinite(m) & (m > 0)):
                    continue
                ax.errorbar(s, m, yerr=e, color=colors[l], marker="o", ms=3, lw=1.2, capsize=2, label=f"layer {l}")
                p = theory_exponent(cfg, l, block, kind)
                ok = np.isfinite(m) & (m > 0)
                fitted = False
                if p is None and cfg.layer_norm and ok.sum() >= 3:
                    # pre-LN has no theory exponent: the authors draw the whole-grid regression slope, rounded to 0.1
                    p, fitted = round(fit_power_law(s, m).slope, 1), True
                if p is not None and p not in guide_done:
                    k0 = int(np.argmax(ok))
                    for offset in (1.0, 1e-2, 1e2):
                        ax.plot(s, offset * m[k0] * (s / s[k0]) ** p, "--", color="gray", lw=0.8, alpha=0.7)
                    ax.plot(
                        [], [], "--", color="gray", label=f"$\\sigma^{{{p:g}}}$ ({'fitted' if fitted else 'theory'})"
                    )
                    guide_done.add(p)
            title = f"W_{block}: {LABELS[kind]}" if block != "W" else f"W: {LABELS[kind]}"
            if not ax.has_data():
                # Nothing positive to draw on a log axis: say why instead of showing empty log decades.
                ax.set_title(title)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(
                    0.5,
                    0.5,
                    "identically 0 for every sigma\n(nothing to draw on a log scale)",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="0.3",
                )
                continue
            ax.set_yscale("log")
            if log_x:
                ax.set_xscale("log")
            finite = mean[:, :, b, q][np.isfinite(mean[:, :, b, q]) & (mean[:, :, b, q] > 0)]
            if finite.size:
                ax.set_ylim(finite.min() / 10, finite.max() * 10)
            ax.set_title(title)
            ax.set_xlabel("embedding std $\\sigma$")
            ax.set_ylabel("$\\|\\cdot\\|_F$")
            ax.legend(fontsize=7)
    title = cfg.name().replace("_", " ")
    fig.suptitle(f"{title}\n(mean $\\pm$ s.e.m. over {cfg.repeats} repeats)", fontsize=9)
    return finish(fig, save, figure_path(path), dpi=120)


# ---------------------------------------------------------------------------------------------------------
# command line


#: Time measured on the 2-core development machine (one core's worth; quick default).
TIMING = "quick default ~8 s; --full about 3-10 min for one layer, much more for deeper models"

#: The loss names of the command line (as in ``hessian``) and of the config.
LOSS_NAMES = {"cross_entropy": "ce", "mse": "mse"}


def build_parser():
    p = study_parser("hessian_growth", __doc__, seed=1234, seed_help="seed of the first model's weights", timing=TIMING)
    p.add_argument("--model", choices=("transformer", "mlp"), default="transformer", help="model family")
    p.add_argument("--layers", type=integer(1), default=1, help="depth (1..5 in the paper)")
    p.add_argument(
        "--grid",
        choices=("log", "log_short", "linear", "linear_short"),
        default=None,
        help="sigma grid (default: log; log_short for linear attention)",
    )
    p.add_argument("--num-sigmas", type=integer(2), default=FullDefault(12, 20), help="points of the sigma grid")
    p.add_argument("--norm", choices=("none", "pre"), default="none", help="pre-LayerNorm or none")
    p.add_argument("--attention", choices=("softmax", "linear"), default="softmax", help="attention kind")
    p.add_argument(
        "--residual-scaling",
        type=real(),
        default=None,
        help="r in resid_mid = r resid_pre + attn_out (default: 1; 0 for linear attention)",
    )
    p.add_argument(
        "--loss",
        choices=tuple(LOSS_NAMES),
        default=None,
        help="default: cross_entropy for softmax attention, mse for linear attention and the MLP",
    )
    p.add_argument("--repeats", type=integer(1), default=FullDefault(3, 20), help="fresh model seeds")
    p.add_argument("--batch", type=integer(1), default=64, help="addition sequences")
    p.add_argument("--d-model", type=integer(1), default=FullDefault(32, 128), help="model width")
    p.add_argument("--d-mlp", type=integer(1), default=None, help="MLP width (default: 4 d_model)")
    p.add_argument(
        "--embedding",
        choices=("fresh", "rescaled"),
        default="fresh",
        help="redraw the embeddings at every sigma, or rescale one draw",
    )
    p.add_argument(
        "--method", choices=("auto", "hutchpp", "hutchinson"), default="auto", help="norm estimator of lower layers"
    )
    p.add_argument("--probes", type=integer(1), default=16, help="Hutchinson probes per block without an exact path")
    p.add_argument("--sketch", type=integer(1), default=8, help="Hutch++ sketch columns")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="compute precision")
    p.add_argument("--sigma-max", type=real(above=0.0), default=1.0, help="upper end of the small-sigma slope fit")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def config_from_args(args) -> GrowthConfig:
    linear = args.attention == "linear"
    d_model = args.d_model
    loss = LOSS_NAMES[args.loss] if args.loss is not None else ("mse" if linear or args.model == "mlp" else "ce")
    return GrowthConfig(
        model=args.model,
        n_layers=args.layers,
        d_model=d_model,
        d_mlp=4 * d_model if args.d_mlp is None else args.d_mlp,
        layer_norm=args.norm == "pre",
        attention=args.attention,
        residual_scaling=args.residual_scaling if args.residual_scaling is not None else (0.0 if linear else 1.0),
        loss=loss,
        grid=args.grid if args.grid is not None else ("log_short" if linear else "log"),
        num_sigmas=args.num_sigmas,
        repeats=args.repeats,
        batch=args.batch,
        embedding=args.embedding,
        method=args.method,
        probes=args.probes,
        sketch=args.sketch,
        dtype=args.dtype,
        model_seed=args.seed,
    )


def output_paths(args):
    """The results file of the command line's config and the files drawn from it."""
    config = config_from_args(args)
    path = result_path(args.out, config.label(), config)
    return path, [
        figure_path(path),
        path.with_name(path.stem + "_slopes.txt"),
        path.with_name(path.stem + "_slopes.json"),
    ]


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    config = config_from_args(args)
    path = run(config, path, progress=not args.no_progress)
    results = load(path)
    plot(path)
    png = figure_path(path)
    rows = slope_table(results, sigma_max=args.sigma_max)
    table = format_slope_table(rows, args.sigma_max)
    seconds = results.seconds
    summary = (
        f"{config.name()}\n{int(results.norms.shape[0] * results.norms.shape[1])} points, "
        f"{float(seconds.sum()):.1f} s of curvature computation ({float(seconds.mean()):.2f} s per point); "
        f"largest relative standard error of a single norm: {_max_rse(results):.2e}\n\n{table}\n"
    )
    path.with_name(path.stem + "_slopes.txt").write_text(summary)
    path.with_name(path.stem + "_slopes.json").write_text(json.dumps(rows, indent=1))
    print(summary)
    print(f"saved {path}, {png} and {path.stem}_slopes.txt")
    return path


def _max_rse(results: GrowthResults) -> float:
    ok = results.norms > 0
    return float(np.max(results.stderr[ok] / results.norms[ok])) if ok.any() else 0.0


if __name__ == "__main__":
    main()
