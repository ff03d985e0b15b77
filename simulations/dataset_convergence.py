"""Loss landscape versus dataset size: |L_{k+1} - L_k| and ||H_{k+1} - H_k||_F against k at fixed parameters.

One-layer pre-LN transformer at initialisation, 5-digit addition, cross-entropy on the answer digits of each
sequence (one sequence = one sample). The empirical loss L_k and its exact Hessian H_k (float64 autograd, over
the chosen parameter groups) over the first k samples are updated one sample at a time; the log-log slopes
of binned medians (k >= 10) are fitted and compared with the rate -1 (two means over k and k + 1
samples differ by O(1/k)) (Petrov, Kiselev, Meshkov & Grabovoy, 2025). Chunks go to HDF5 as they finish
(a rerun resumes); the figure is drawn from the file.

Quick default: d_model 8, Hessian over W_Q and W_V (128 parameters), N = 1000 (about 10 s of one core).
``--full``: N = 5000 and the groups Q, V, LN1, W1 (400 parameters).

    python -m simulations.dataset_convergence [--full] [--samples N] [--groups Q,V] [--out results/dataset_convergence]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from hessian import CrossEntropyLoss
from hessian.addition import addition_data
from hessian.block_groups import GROUPS, block_groups
from hessian.models import Transformer
from hessian.per_sample import per_sample_hessians, running_differences
from particles.checks import check_int
from particles.io import ResultStore
from simulations._addition_model import ANSWER, addition_transformer
from simulations.common.cli import FullDefault, config_or_exit, integer, refuse_existing, set_threads, study_parser
from simulations.common.figures import figure_path, finish, panels
from simulations.common.fits import compare_with_theory, fit_line
from simulations.common.store import stored_config

KIND = "hessian_dataset_convergence"
#: the derived rate of both differences: |mean_(k+1) - mean_k| = |x_(k+1) - mean_k| / (k + 1) = O(1/k)
THEORY_RATE = -1.0


@dataclass(frozen=True)
class RateFit:
    """Least-squares slope of log(binned median) on log k.

    Attributes:
        slope: fitted exponent; ci: half-width of its 95% interval; centres, medians: the (B,) bins used.
    """

    slope: float
    ci: float
    centres: np.ndarray
    medians: np.ndarray


def fit_rate(k: np.ndarray, values: np.ndarray, *, k_min: int = 10, num_bins: int = 20) -> RateFit:
    """Slope of log-spaced binned medians of ``values`` against k >= k_min (medians tame the heavy scatter).

    Args:
        k: (n,) sample counts; values: (n,) positive differences (NaN ignored).
        k_min: smallest k used (10 by default).
        num_bins: log-spaced bins between k_min and max k.

    Returns:
        RateFit (slope nan if fewer than 3 non-empty bins).
    """
    k, values = np.asarray(k, float), np.asarray(values, float)
    ok = np.isfinite(values) & (values > 0) & (k >= k_min)
    if ok.sum() < 3:
        return RateFit(float("nan"), float("nan"), np.array([]), np.array([]))
    edges = np.logspace(np.log10(k_min), np.log10(k[ok].max() + 1), num_bins + 1)
    idx = np.digitize(k[ok], edges) - 1
    centres, medians = [], []
    for b in range(num_bins):
        sel = idx == b
        if sel.any():
            centres.append(float(np.exp(np.mean(np.log(k[ok][sel])))))
            medians.append(float(np.median(values[ok][sel])))
    centres, medians = np.array(centres), np.array(medians)
    if len(centres) < 3:
        return RateFit(float("nan"), float("nan"), centres, medians)
    fit = fit_line(np.log(centres), np.log(medians))
    return RateFit(fit.slope, fit.ci, centres, medians)


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """Dataset-size experiment at fixed (initial) parameters of the one-layer pre-LN transformer.

    Attributes:
        d_model, d_mlp: sizes (d_head = d_model, one head); layer_norm: pre-LN block.
        groups: comma-separated parameter groups of ``hessian.block_groups.GROUPS`` whose Hessian is tracked.
        num_samples: N, the largest dataset (one addition sequence per sample, CE on its answer digits).
        chunk: samples per saved piece (and per batched Hessian computation).
        data_seed, model_seed: seeds of the samples and of the parameters.
    """

    d_model: int = 8
    d_mlp: int = 32
    layer_norm: bool = True
    groups: str = "Q,V"
    num_samples: int = 1000
    chunk: int = 100
    data_seed: int = 4321
    model_seed: int = 1234

    def __post_init__(self) -> None:
        for name in ("d_model", "d_mlp", "num_samples", "chunk"):
            check_int(name, getattr(self, name), low=1)
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 (one difference), got {self.num_samples}")
        names = [g.strip() for g in str(self.groups).split(",")]
        bad = [g for g in names if g not in GROUPS or (g.startswith("LN") and not self.layer_norm)]
        if not names or bad:
            raise ValueError(
                f"groups must be comma-separated names from {GROUPS} (LN groups need layer_norm), got {self.groups!r}"
            )

    def model(self) -> Transformer:
        return addition_transformer(d_model=self.d_model, d_mlp=self.d_mlp, layer_norm=self.layer_norm)

    def blocks(self) -> list[str]:
        groups = block_groups(self.model())
        return [n for g in self.groups.split(",") for n in groups[g.strip()]]

    def name(self) -> str:
        norm = "pre" if self.layer_norm else "none"
        groups = self.groups.replace(",", "+")
        return f"dataset_norm={norm}_d={self.d_model}_groups={groups}_N={self.num_samples}_seed={self.data_seed}"


def run(config: DatasetConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Per-sample losses and Hessians, chunk by chunk, with the running differences; to HDF5 (resumable).

    Store (``particles.io.ResultStore``): one key ``chunk={c:05d}`` per finished chunk with datasets
    ``losses``, ``dL``, ``dH`` (chunk,), ``H_mean`` (P, P) (the running mean after the chunk, to resume) and
    attrs ``k0``, ``L_mean``, ``seconds``.
    """
    if not isinstance(config, DatasetConfig):
        raise TypeError(f"config must be a DatasetConfig, got {type(config).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})
    model = config.model()
    params = model.init(seed=config.model_seed)
    a0, a1 = ANSWER
    # one sequence per "batch" of the generator: every sample gets its own enrichment coin, i.i.d.
    tokens = addition_data(1, num_batches=config.num_samples, seed=config.data_seed)[:, 0]
    loss = CrossEntropyLoss()
    blocks = config.blocks()
    L_prev, H_prev = 0.0, None
    starts = list(range(0, config.num_samples, config.chunk))
    for c, k0 in enumerate(tqdm(starts, desc="dataset size", disable=not progress)):
        key = f"chunk={c:05d}"
        if store.done(key):
            saved = store.load(key)
            L_prev, H_prev = float(saved["L_mean"]), torch.as_tensor(saved["H_mean"])
            continue
        t0 = time.perf_counter()
        sl = slice(k0, min(k0 + config.chunk, config.num_samples))
        losses, hessians = per_sample_hessians(model, loss, params, tokens[sl], tokens[sl, a0:a1], blocks)
        dL, dH, L_prev, H_prev = running_differences(losses, hessians, k0=k0, L_prev=L_prev, H_prev=H_prev)
        store.save(
            key,
            losses=losses.numpy(),
            dL=dL,
            dH=dH,
            H_mean=H_prev.numpy(),
            k0=k0,
            L_mean=L_prev,
            seconds=time.perf_counter() - t0,
        )
    return path


@dataclass(frozen=True)
class DatasetResults:
    """A dataset-convergence file in memory.

    Attributes:
        config: DatasetConfig; k: (N,) samples in the mean before the step (0..N-1); dL, dH: (N,) differences
        ``|L_{k+1} - L_k|``, ``||H_{k+1} - H_k||_F`` (NaN at k = 0 and where missing); losses: (N,) per-sample losses;
        H_mean: (P, P) ``H_N`` (None if unfinished); seconds: compute time.
    """

    config: DatasetConfig
    k: np.ndarray
    dL: np.ndarray
    dH: np.ndarray
    losses: np.ndarray
    H_mean: np.ndarray | None
    seconds: float

    def rates(self, *, k_min: int = 10, num_bins: int = 20) -> dict[str, RateFit]:
        """Fitted log-log rates of both differences (``fit_rate``)."""
        return {
            "loss": fit_rate(self.k, self.dL, k_min=k_min, num_bins=num_bins),
            "hessian": fit_rate(self.k, self.dH, k_min=k_min, num_bins=num_bins),
        }


def load(path: str | Path) -> DatasetResults:
    """Read a dataset-convergence file (missing chunks are NaN)."""
    config = stored_config(path, DatasetConfig, KIND)
    store = ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})
    N = config.num_samples
    dL, dH, losses = np.full(N, np.nan), np.full(N, np.nan), np.full(N, np.nan)
    seconds, H_mean = 0.0, None
    done = set(store.keys())
    starts = list(range(0, N, config.chunk))
    for c, k0 in enumerate(starts):
        if f"chunk={c:05d}" in done:
            v = store.load(f"chunk={c:05d}")
            n = len(v["dL"])
            dL[k0 : k0 + n], dH[k0 : k0 + n], losses[k0 : k0 + n] = v["dL"], v["dH"], v["losses"]
            seconds += float(v["seconds"])
            if c == len(starts) - 1:
                H_mean = v["H_mean"]
    return DatasetResults(config, np.arange(N, dtype=float), dL, dH, losses, H_mean, seconds)


def plot(path: str | Path, *, k_min: int = 10, fig=None, ax=None, save=True) -> Figure:
    """Log-log |L_{k+1} - L_k| and ||H_{k+1} - H_k||_F against k: every k, binned medians, fitted and theory slopes;
    saved as ``<stem>.png``.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the panels into; None for a new one.
        ax: the axes to draw on instead (two: loss, Hessian).
        save: True for the PNG beside the data, False for no file, or a path.
        k_min: smallest k of the rate fit.
    """
    res = load(path)
    rates = res.rates(k_min=k_min)
    fig, axes = panels(1, 2, size=(12, 4.6), fig=fig, ax=ax)
    shown = (("loss", res.dL, "$|L_{k+1} - L_k|$"), ("hessian", res.dH, "$\\|H_{k+1} - H_k\\|_F$"))
    for ax, (key, values, label) in zip(axes, shown):
        ok = np.isfinite(values) & (values > 0)
        ax.loglog(res.k[ok], values[ok], ".", ms=2, alpha=0.35, color="C0", label="every k")
        fit = rates[key]
        if fit.centres.size:
            ax.loglog(fit.centres, fit.medians, "o", color="C3", ms=5, label=f"binned medians (k >= {k_min})")
            c = np.exp(np.mean(np.log(fit.medians) - fit.slope * np.log(fit.centres)))
            ax.loglog(
                fit.centres,
                c * fit.centres**fit.slope,
                "-",
                color="C3",
                label=f"fit: slope {fit.slope:.3f} $\\pm$ {fit.ci:.3f}",
            )
            c1 = np.exp(np.mean(np.log(fit.medians) - THEORY_RATE * np.log(fit.centres)))
            ax.loglog(fit.centres, c1 * fit.centres**THEORY_RATE, "--", color="k", label="theory: slope -1")
        ax.set_xlabel("k (samples in the empirical loss)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    c = res.config
    fig.suptitle(
        f"pre-LN transformer at fixed parameters, addition, CE; Hessian over {c.groups} (d_model {c.d_model}), "
        f"N = {c.num_samples}",
        fontsize=9,
    )
    return finish(fig, save, figure_path(path))


# ---------------------------------------------------------------------------------------------------------
# command line


#: Time measured on the 2-core development machine (one core's worth; quick default).
TIMING = "quick default ~10 s; --full several minutes"


def build_parser() -> argparse.ArgumentParser:
    p = study_parser("dataset_convergence", __doc__, seed=4321, seed_help="seed of the samples", timing=TIMING)
    p.add_argument("--samples", type=integer(2), default=FullDefault(1000, 5000), help="N, the largest dataset")
    p.add_argument(
        "--groups",
        default=FullDefault("Q,V", "Q,V,LN1,W1"),
        help="comma-separated groups of hessian.block_groups.GROUPS",
    )
    p.add_argument("--d-model", type=integer(1), default=8, help="model width")
    p.add_argument("--d-mlp", type=integer(1), default=None, help="MLP width (default: 4 d_model)")
    p.add_argument("--chunk", type=integer(1), default=100, help="samples per saved chunk")
    p.add_argument("--k-min", type=integer(1), default=10, help="smallest k in the rate fit")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> DatasetConfig:
    return DatasetConfig(
        d_model=args.d_model,
        d_mlp=4 * args.d_model if args.d_mlp is None else args.d_mlp,
        groups=args.groups,
        num_samples=args.samples,
        chunk=args.chunk,
        data_seed=args.seed,
    )


def output_paths(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """The results file of the command line's config and the files drawn from it."""
    path = args.out / f"{config_from_args(args).name()}.h5"
    return path, [
        figure_path(path),
        path.with_name(path.stem + "_summary.txt"),
        path.with_name(path.stem + "_rates.json"),
    ]


def summary(path: str | Path, *, k_min: int = 10) -> tuple[str, dict]:
    """The printed summary of a file and its fitted rates (slope, ci, theory, bins) per difference."""
    res = load(path)
    config = res.config
    rates = res.rates(k_min=k_min)
    rows = {
        key: dict(slope=fit.slope, ci=fit.ci, theory=THEORY_RATE, bins=int(fit.centres.size))
        for key, fit in rates.items()
    }
    loss, hess = rates["loss"], rates["hessian"]
    lines = [
        config.name(),
        f"{res.seconds:.1f} s of Hessian computation, {len(config.blocks())} parameter tensors ({config.groups}), "
        f"N = {config.num_samples}",
        f"|L_(k+1) - L_k|    : fitted slope {loss.slope:.3f} +- {loss.ci:.3f} (95%), theory {THEORY_RATE:g}: "
        + compare_with_theory(THEORY_RATE, loss.slope - loss.ci, loss.slope + loss.ci)[1],
        f"||H_(k+1) - H_k||_F: fitted slope {hess.slope:.3f} +- {hess.ci:.3f} (95%), theory {THEORY_RATE:g}: "
        + compare_with_theory(THEORY_RATE, hess.slope - hess.ci, hess.slope + hess.ci)[1],
        f"(binned medians over k >= {k_min}; L_N = {float(np.nanmean(res.losses)):.4f})",
    ]
    return "\n".join(lines) + "\n", rows


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    path = run(config_from_args(args), path, progress=not args.no_progress)
    plot(path, k_min=args.k_min)
    text, rows = summary(path, k_min=args.k_min)
    path.with_name(path.stem + "_summary.txt").write_text(text)
    path.with_name(path.stem + "_rates.json").write_text(json.dumps(rows, indent=1))
    print(text)
    print(f"saved {path}, {figure_path(path)} and {path.stem}_summary.txt")
    return path


if __name__ == "__main__":
    main()
