"""Loss landscape versus dataset size (theory note §4.5, after Petrov, Kiselev, Meshkov & Grabovoy, 2025).

At fixed parameters w, with per-sample losses ``l_i`` and ``L_k = (1/k) sum_{i<=k} l_i``, ``H_k = hess L_k``:

    L_{k+1} - L_k = (l_{k+1} - L_k) / (k + 1),        H_{k+1} - H_k = (hess l_{k+1} - H_k) / (k + 1),

so both differences decay as 1/k (slope -1 on log-log axes); with a minimiser w* of every L_k the note's
bound reads ``|L_{k+1}(w) - L_k(w)| <= 2 l* / (k+1) + M |w - w*|^2 / (k+1)``. The per-sample Hessians are
exact (autograd, float64) over a few parameter groups of the one-layer pre-LN transformer on the addition
task; ``simulations/dataset_convergence.py`` is the command line.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import Tensor
from torch.func import grad, vjp, vmap

from ._checks import check_positive_int
from ._problem import Loss, Model, flatten, make_problem, unflatten
from .addition import addition_data, answer_positions
from .block import GROUPS, block_groups, read_store_config
from .losses import CrossEntropyLoss
from .models import Transformer

#: the rate of both differences derived in theory note §4.5
THEORY_RATE = -1.0


def per_sample_hessians(
    model: Model, loss: Loss, params: dict[str, Tensor], X: Tensor, Y: Tensor, blocks: Sequence[str]
) -> tuple[Tensor, Tensor]:
    """Exact per-sample losses and Hessians ``hess_w loss(model(params, X[i:i+1]), Y[i:i+1])`` over ``blocks``.

    Every sample gets its own copy of w; the sum of the per-sample losses then has a block-diagonal
    Hessian, and one Hessian-vector product with e_c repeated over the copies returns column c of every
    per-sample Hessian at once: P products for n samples (instead of n P).

    Args:
        model: functional model ``f(params, X)`` (called with a batch of one sample).
        loss: ``loss(output, Y) -> scalar``.
        params: parameters (cast to float64).
        X: (n, ...) samples; Y: (n, ...) targets.
        blocks: parameter names (row-major concatenation, P entries).

    Returns:
        (losses (n,), hessians (n, P, P)) in float64.

    Raises:
        ValueError, TypeError: as ``dense_hessian`` (checked on the first sample); X and Y of different length.
    """
    if not isinstance(X, Tensor) or not isinstance(Y, Tensor):
        raise TypeError(f"X and Y must be torch.Tensors, got {type(X).__name__} and {type(Y).__name__}")
    if X.ndim < 1 or Y.ndim < 1 or X.shape[0] != Y.shape[0] or X.shape[0] == 0:
        raise ValueError(
            f"X and Y must hold the same number n >= 1 of samples on axis 0, got shapes {tuple(X.shape)} and {tuple(Y.shape)}"
        )
    problem = make_problem(model, loss, params, X[:1], Y[:1], blocks, torch.float64)
    names, shapes = problem.names, problem.shapes
    P = problem.dim
    w0 = flatten(problem.params, names)
    X = X.to(torch.float64) if X.is_floating_point() else X
    Y = Y.to(torch.float64) if Y.is_floating_point() else Y
    n = X.shape[0]

    def one(w: Tensor, x: Tensor, y: Tensor) -> Tensor:
        merged = dict(problem.params)
        merged.update(unflatten(names, shapes, w))
        return loss(model(merged, x[None]), y[None])

    def total(W: Tensor) -> Tensor:
        return vmap(one)(W, X, Y).sum()

    W = w0.expand(n, P).clone()
    with torch.no_grad():
        losses = vmap(one)(W, X, Y)
    _, pullback = vjp(grad(total), W)
    eye = torch.eye(P, dtype=torch.float64)
    cols = vmap(lambda e: pullback(e.expand(n, P))[0], chunk_size=32)(eye)  # (P, n, P): [c, i, :] = H_i e_c
    return losses.detach(), cols.permute(1, 2, 0).detach()


def running_differences(
    losses: Tensor, hessians: Tensor, *, k0: int = 0, L_prev: float = 0.0, H_prev: Tensor | None = None
) -> tuple[np.ndarray, np.ndarray, float, Tensor]:
    """``|L_{k+1} - L_k|`` and ``||H_{k+1} - H_k||_F`` for the samples k0+1 .. k0+n, continuing a running mean.

    Args:
        losses: (n,) per-sample losses of samples k0+1 .. k0+n (1-based).
        hessians: (n, P, P) their Hessians.
        k0: samples already averaged.
        L_prev, H_prev: ``L_{k0}`` and ``H_{k0}`` (ignored when k0 = 0).

    Returns:
        (dL (n,), dH (n,), L_{k0+n}, H_{k0+n}); entry j is the difference ``L_{k+1} - L_k`` at k = k0 + j
        (NaN at k = 0, where L_0 is undefined).
    """
    n, P = hessians.shape[0], hessians.shape[-1]
    L = float(L_prev) if k0 > 0 else 0.0
    H = H_prev.clone() if (k0 > 0 and H_prev is not None) else torch.zeros(P, P, dtype=torch.float64)
    dL, dH = np.full(n, np.nan), np.full(n, np.nan)
    for j in range(n):
        k = k0 + j  # samples in the current mean
        l, h = float(losses[j]), hessians[j]
        if k == 0:
            L, H = l, h.clone()
            continue
        # exact identities of theory note §4.5: the update and the difference are the same vector
        stepL = (l - L) / (k + 1)
        stepH = (h - H) / (k + 1)
        dL[j], dH[j] = abs(stepL), float(torch.linalg.matrix_norm(stepH))
        L, H = L + stepL, H + stepH
    return dL, dH, L, H


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
        k_min: smallest k used (the note's checks use 10).
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
    res = stats.linregress(np.log(centres), np.log(medians))
    return RateFit(float(res.slope), float(stats.t.ppf(0.975, len(centres) - 2) * res.stderr), centres, medians)


# ---------------------------------------------------------------------------------------------------------
# the experiment


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """Dataset-size experiment at fixed (initial) parameters of the one-layer pre-LN transformer.

    Attributes:
        d_model, d_mlp: sizes (d_head = d_model, one head); layer_norm: pre-LN block.
        groups: comma-separated parameter groups of ``hessian.block.GROUPS`` whose Hessian is tracked.
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
            check_positive_int(getattr(self, name), name)
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 (one difference), got {self.num_samples}")
        names = [g.strip() for g in str(self.groups).split(",")]
        bad = [g for g in names if g not in GROUPS or (g.startswith("LN") and not self.layer_norm)]
        if not names or bad:
            raise ValueError(
                f"groups must be comma-separated names from {GROUPS} (LN groups need layer_norm), got {self.groups!r}"
            )

    def model(self) -> Transformer:
        a0, a1 = answer_positions(5)
        return Transformer(
            d_model=self.d_model,
            d_head=self.d_model,
            d_mlp=self.d_mlp,
            layer_norm=self.layer_norm,
            readout=(a0 - 1, a1 - 1),
        )

    def blocks(self) -> list[str]:
        groups = block_groups(self.model())
        return [n for g in self.groups.split(",") for n in groups[g.strip()]]

    def name(self) -> str:
        norm = "pre" if self.layer_norm else "none"
        return f"dataset_norm={norm}_d={self.d_model}_groups={self.groups.replace(',', '+')}_N={self.num_samples}_seed={self.data_seed}"


KIND = "hessian_dataset_convergence"


def run_dataset_convergence(config: DatasetConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Per-sample losses and Hessians, chunk by chunk, with the running differences; to HDF5 (resumable).

    Store (``particles.io.ResultStore``): one key ``chunk={c:05d}`` per finished chunk with datasets
    ``losses``, ``dL``, ``dH`` (chunk,), ``H_mean`` (P, P) (the running mean after the chunk, to resume) and
    attrs ``k0``, ``L_mean``, ``seconds``.
    """
    from tqdm.auto import tqdm

    from particles.io import ResultStore

    if not isinstance(config, DatasetConfig):
        raise TypeError(f"config must be a DatasetConfig, got {type(config).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})
    model = config.model()
    params = model.init(seed=config.model_seed)
    a0, a1 = answer_positions(5)
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


def load_dataset_convergence(path: str | Path) -> DatasetResults:
    """Read a dataset-convergence file (missing chunks are NaN)."""
    from particles.io import ResultStore

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    config = DatasetConfig(**read_store_config(path, DatasetConfig, KIND))
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


def plot_dataset_convergence(path: str | Path, out: str | Path | None = None, *, k_min: int = 10) -> Path:
    """Log-log |L_{k+1} - L_k| and ||H_{k+1} - H_k||_F against k: every k, binned medians, fitted and theory slopes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = load_dataset_convergence(path)
    out = Path(path).with_suffix(".png") if out is None else Path(out)
    rates = res.rates(k_min=k_min)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    panels = (("loss", res.dL, "$|L_{k+1} - L_k|$"), ("hessian", res.dH, "$\\|H_{k+1} - H_k\\|_F$"))
    for ax, (key, values, label) in zip(axes, panels):
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
            ax.loglog(fit.centres, c1 * fit.centres**THEORY_RATE, "--", color="k", label="theory: slope -1 (note §4.5)")
        ax.set_xlabel("k (samples in the empirical loss)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    c = res.config
    fig.suptitle(
        f"pre-LN transformer at fixed parameters, addition, CE; Hessian over {c.groups} (d_model {c.d_model}), N = {c.num_samples}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
