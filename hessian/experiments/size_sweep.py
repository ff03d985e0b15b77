"""Spectra and conditioning of the attention blocks across model sizes (issue 11, theory note §1.2, §2.2-2.5, §3.3).

For every (d_model, n_layers, attention) of a grid, the reference transformer (``growth.build``: 5-digit addition,
``batch`` sequences, logits of the answer positions, GPT-2 init, one head, d_head = d_model, d_mlp = 4 d_model,
no LayerNorm, residual 1) is drawn once at ``model_seed`` and, for each chosen weight block (W_Q, W_K, W_V, W_O of
the last layer, or of every layer), the diagonal blocks of H, H_o and H_f are summarised by ``QUANTITIES``.

Method per number (stored next to it in the HDF5 file):

* P = d_model^2 <= ``dense_threshold``: the exact dense blocks (``hessian_split``) and their full spectra by LAPACK;
  every quantity is exact ("dense").
* larger blocks are matrix-free: extreme eigenvalues and, for a definite block, kappa by Lanczos ("lanczos");
  trace by Hutch++ ("hutchpp"); Frobenius norm by Hutchinson ("hutchinson"); negative fraction and mass by
  stochastic Lanczos quadrature ("slq"); kappa and rank of an indefinite or singular block are not determined
  ("undetermined", NaN / -1: its smallest |lambda| is interior); an end not converged within
  ``lanczos_maxiter`` ARPACK restarts (typically the bottom of a PSD block, a cluster at 0) is NaN ("unconverged").

File layout (schema 1): root attrs ``kind`` = "hessian_size_sweep", ``schema``, ``config`` (JSON), ``kinds``,
``quantities``; one group per finished row ``d{d:04d}_layers{n}_{attention}`` with datasets ``blocks`` (B,)
parameter names, ``values`` and ``stderr`` (B, 3, Q) float64, ``methods`` (B, 3, Q) strings, and attrs
``d_model``, ``n_layers``, ``attention``, ``seconds``. Rows are written as they finish, so a rerun resumes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence

from ..conditioning import (
    conditioning_from_eigenvalues,
    conditioning_from_extremes,
    extreme_eigenvalues,
    negative_mass,
    negative_mass_from_eigenvalues,
)
from ..dense import hessian_split
from ..estimators import frobenius_norm, trace
from ..operators import functional_hessian_operator, ggn_operator, hessian_operator
from .block_norms import KINDS
from .growth import GrowthConfig, build
from .results import _config_text

QUANTITIES = (
    "frobenius",
    "trace",
    "largest",
    "smallest",
    "kappa",
    "rank",
    "abs_smallest",
    "negative_fraction",
    "negative_mass",
)
SCHEMA = 1
FILE_KIND = "hessian_size_sweep"


@dataclass(frozen=True, kw_only=True)
class SizeSweepConfig:
    """A grid of model sizes and the budget of the matrix-free estimators.

    Attributes:
        d_models: widths (d_head = d_model, d_mlp = 4 d_model).
        layers: depths.
        attentions: "softmax" and/or "linear" (pattern = masked scores).
        blocks: attention weights measured, among W_Q, W_K, W_V, W_O.
        all_layers: every layer's blocks (else the last layer only).
        loss: "ce" (answer digits, next token; default for both attentions, so they are compared on one loss) or "mse".
        batch: addition sequences in the one batch (seed ``data_seed``); model_seed: weight seed.
        dense_threshold: largest block size P treated densely (4096: d_model 64).
        rtol: relative rank tolerance (None: P eps).
        lanczos_tol: accuracy of the Lanczos extreme eigenvalues relative to |lambda|_max (enough for a log plot).
        lanczos_maxiter: ARPACK restarts per run; beyond it the extremes are NaN with method "unconverged".
        slq_probes, slq_steps: SLQ budget; trace_samples: Hutch++ products; frobenius_samples: Hutchinson probes.
        seed: probe seed.
    """

    d_models: tuple[int, ...] = (8, 16, 32)
    layers: tuple[int, ...] = (1, 2)
    attentions: tuple[str, ...] = ("softmax", "linear")
    blocks: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O")
    all_layers: bool = False
    loss: str = "ce"
    batch: int = 64
    data_seed: int = 1234
    model_seed: int = 1234
    dense_threshold: int = 4096
    rtol: float | None = None
    lanczos_tol: float = 1e-6
    lanczos_maxiter: int = 10
    slq_probes: int = 8
    slq_steps: int = 40
    trace_samples: int = 99
    frobenius_samples: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("d_models", "layers", "attentions", "blocks"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") or len(tuple(value)) == 0:
                raise ValueError(f"{name} must be a non-empty sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name in ("d_models", "layers"):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in getattr(self, name)):
                raise ValueError(f"{name} must hold ints >= 1, got {getattr(self, name)!r}")
        for name, allowed in (("attentions", ("softmax", "linear")), ("blocks", ("W_Q", "W_K", "W_V", "W_O"))):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad:
                raise ValueError(f"{name} must be among {allowed}, got {bad}")
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse', got {self.loss!r}")
        for name, minimum in (
            ("batch", 1),
            ("dense_threshold", 0),
            ("lanczos_maxiter", 1),
            ("slq_probes", 2),
            ("slq_steps", 2),
            ("trace_samples", 3),
            ("frobenius_samples", 2),
            ("seed", 0),
            ("data_seed", 0),
            ("model_seed", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if not isinstance(self.all_layers, bool):
            raise TypeError(f"all_layers must be a bool, got {type(self.all_layers).__name__}")
        if not (isinstance(self.lanczos_tol, float) and 0 < self.lanczos_tol < 1):
            raise ValueError(f"lanczos_tol must be a float in (0, 1), got {self.lanczos_tol!r}")

    def rows(self) -> list[tuple[int, int, str]]:
        """Every (d_model, n_layers, attention), smallest models first."""
        return [(d, n, a) for d in self.d_models for n in self.layers for a in self.attentions]

    def name(self) -> str:
        digest = hashlib.sha1(_config_text(self).encode()).hexdigest()[:8]
        return f"size_sweep_d={'-'.join(map(str, self.d_models))}_layers={'-'.join(map(str, self.layers))}_{digest}"


def row_key(d_model: int, n_layers: int, attention: str) -> str:
    return f"d{d_model:04d}_layers{n_layers}_{attention}"


def row_setup(config: SizeSweepConfig, d_model: int, n_layers: int, attention: str):
    """``(growth.Setup, params)`` of one row: the reference transformer at its GPT-2 initialisation, float64."""
    growth = GrowthConfig(
        n_layers=n_layers,
        d_model=d_model,
        d_mlp=4 * d_model,
        attention=attention,
        loss=config.loss,
        batch=config.batch,
        data_seed=config.data_seed,
        model_seed=config.model_seed,
    )
    setup = build(growth)
    return setup, setup.model.init(seed=config.model_seed, dtype=torch.float64)


def row_blocks(config: SizeSweepConfig, n_layers: int) -> list[str]:
    layers = range(n_layers) if config.all_layers else [n_layers - 1]
    return [f"blocks.{l}.attn.{b}" for l in layers for b in config.blocks]


def dense_summary(M: np.ndarray, rtol: float | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``QUANTITIES`` of a dense symmetric matrix from one LAPACK spectrum: (values (Q,), stderr (Q,), methods)."""
    M = 0.5 * (M + M.T)
    lam = np.linalg.eigvalsh(M)
    c = conditioning_from_eigenvalues(lam, rtol=rtol)
    neg = negative_mass_from_eigenvalues(lam, rtol=rtol)
    values = [
        np.linalg.norm(M),
        np.trace(M),
        c.largest,
        c.smallest,
        c.kappa,
        c.rank,
        c.abs_smallest,
        neg.fraction,
        neg.mass,
    ]
    return np.array(values, dtype=np.float64), np.zeros(len(QUANTITIES)), ["dense"] * len(QUANTITIES)


def operator_summary(op, config: SizeSweepConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``QUANTITIES`` of a symmetric operator by Lanczos, Hutch++, Hutchinson and SLQ (module docstring)."""
    ends = []
    for which in ("smallest", "largest"):
        # each end on its own: a PSD block's bottom (a cluster at 0) may not converge while its top does
        try:
            ends.append(
                extreme_eigenvalues(
                    op,
                    1,
                    which,
                    dense_threshold=0,
                    tol=config.lanczos_tol,
                    seed=config.seed,
                    maxiter=config.lanczos_maxiter,
                ).values[0]
            )
        except ArpackNoConvergence:
            ends.append(float("nan"))
    c = conditioning_from_extremes(*ends, op.shape[0], rtol=config.rtol)
    neg = negative_mass(
        op,
        rtol=config.rtol,
        dense_threshold=0,
        num_probes=config.slq_probes,
        num_steps=config.slq_steps,
        seed=config.seed,
    )
    tr = trace(op, method="hutchpp", num_samples=config.trace_samples, seed=config.seed)
    fro = frobenius_norm(op, method="hutchinson", num_samples=config.frobenius_samples, seed=config.seed)
    ok = ["lanczos" if np.isfinite(e) else "unconverged" for e in ends]
    known = "lanczos" if np.isfinite(c.kappa) else "undetermined"
    values = [fro.value, tr.value, c.largest, c.smallest, c.kappa, c.rank, c.abs_smallest, neg.fraction, neg.mass]
    stderr = [fro.stderr, tr.stderr, 0.0, 0.0, 0.0, 0.0, 0.0, neg.fraction_stderr, neg.mass_stderr]
    methods = ["hutchinson", "hutchpp", ok[1], ok[0], known, known, known, "slq", "slq"]
    return np.array(values, dtype=np.float64), np.array(stderr, dtype=np.float64), methods


def measure_row(config: SizeSweepConfig, d_model: int, n_layers: int, attention: str) -> dict:
    """Every block of one row: dict with ``blocks`` (B,), ``values``/``stderr`` (B, 3, Q), ``methods`` (B, 3, Q)."""
    setup, params = row_setup(config, d_model, n_layers, attention)
    problem = (setup.model, setup.loss, params, setup.tokens, setup.target)
    names = row_blocks(config, n_layers)
    B, Q = len(names), len(QUANTITIES)
    values, stderr = np.full((B, 3, Q), np.nan), np.full((B, 3, Q), np.nan)
    methods = np.full((B, 3, Q), "", dtype=object)
    for b, name in enumerate(names):
        P = params[name].numel()
        if P <= config.dense_threshold:
            split = hessian_split(*problem, [name], max_params=config.dense_threshold)
            parts = [dense_summary(M.matrix.numpy(), config.rtol) for M in (split.H, split.H_o, split.H_f)]
        else:
            ops = [f(*problem, [name]) for f in (hessian_operator, ggn_operator, functional_hessian_operator)]
            parts = [operator_summary(op, config) for op in ops]
        for k, (v, s, m) in enumerate(parts):
            values[b, k], stderr[b, k], methods[b, k] = v, s, m
    return {"blocks": names, "values": values, "stderr": stderr, "methods": methods}


# ---------------------------------------------------------------------------------------------------------
# HDF5


def _open_checked(path: Path, config: SizeSweepConfig, mode: str):
    import h5py

    f = h5py.File(path, mode)
    text = _config_text(config)
    if "config" in f.attrs and f.attrs["config"] != text:
        f.close()
        raise ValueError(
            f"path {path} holds a size sweep of another config ({f.attrs['config']}), expected {text}; choose another output path or delete the file"
        )
    return f


def run_size_sweep(config: SizeSweepConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Run (or resume) the sweep, writing each (d_model, n_layers, attention) row to HDF5 as it finishes.

    Args:
        config: the grid.
        path: HDF5 file; an existing file must hold the same config, its rows are skipped.
        progress: show a tqdm bar.

    Returns:
        The path of the HDF5 file.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_checked(path, config, "a") as f:
        f.attrs.update(
            schema=SCHEMA, kind=FILE_KIND, config=_config_text(config), kinds=list(KINDS), quantities=list(QUANTITIES)
        )
        done = set(f.keys())
    todo = [row for row in config.rows() if row_key(*row) not in done]
    bar = tqdm(todo, desc="size sweep", disable=not progress)
    for d, n, a in bar:
        bar.set_postfix_str(f"d={d} layers={n} {a}")
        t0 = time.perf_counter()
        row = measure_row(config, d, n, a)
        with _open_checked(path, config, "a") as f:
            g = f.create_group(row_key(d, n, a))
            g.create_dataset("blocks", data=np.array(row["blocks"], dtype="S"))
            g.create_dataset("values", data=row["values"])
            g.create_dataset("stderr", data=row["stderr"])
            g.create_dataset("methods", data=row["methods"].astype("S"))
            g.attrs.update(d_model=d, n_layers=n, attention=a, seconds=time.perf_counter() - t0)
    return path


@dataclass(frozen=True)
class SizeSweepResults:
    """A size-sweep file in memory.

    Attributes:
        config: the SizeSweepConfig.
        rows: dict (d_model, n_layers, attention) -> dict(blocks, values (B, 3, Q), stderr, methods, seconds),
            finished rows only.
    """

    config: SizeSweepConfig
    rows: dict

    def get(
        self,
        d_model: int,
        n_layers: int,
        attention: str,
        block: str,
        kind: str,
        quantity: str,
        *,
        layer: int | None = None,
    ) -> tuple[float, str]:
        """``(value, method)`` of one number; ``layer`` None means the last layer. NaN, "" if the row is missing."""
        row = self.rows.get((d_model, n_layers, attention))
        if row is None:
            return float("nan"), ""
        name = f"blocks.{n_layers - 1 if layer is None else layer}.attn.{block}"
        b, k, q = row["blocks"].index(name), KINDS.index(kind), QUANTITIES.index(quantity)
        return float(row["values"][b, k, q]), row["methods"][b, k, q]


def load_size_sweep(path: str | Path) -> SizeSweepResults:
    """Read a size-sweep file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != FILE_KIND:
            raise ValueError(f"{path} is not a {FILE_KIND} file (kind={f.attrs.get('kind')!r})")
        config = SizeSweepConfig(**json.loads(f.attrs["config"]))
        rows = {}
        for key in f:
            g = f[key]
            rows[(int(g.attrs["d_model"]), int(g.attrs["n_layers"]), str(g.attrs["attention"]))] = {
                "blocks": [b.decode() for b in g["blocks"][()]],
                "values": g["values"][()],
                "stderr": g["stderr"][()],
                "methods": np.char.decode(g["methods"][()]).astype(object),
                "seconds": float(g.attrs["seconds"]),
            }
    return SizeSweepResults(config, rows)


# ---------------------------------------------------------------------------------------------------------
# table and figure, both from the file


def format_size_table(results: SizeSweepResults) -> str:
    """Plain-text table, one line per (row, block): norms of H, H_o, H_f, tr H, extreme eigenvalues, kappa, rank, mu_-."""
    head = (
        f"{'d':>4} {'L':>2} {'attn':>7} {'block':>16} | {'|H|_F':>9} {'|H_o|_F':>9} {'|H_f|_F':>9} {'tr H':>10} | "
        f"{'lmax H':>10} {'lmin H':>10} {'kappa H':>9} {'kappa H_o':>9} {'rk H_o/P':>9} | {'mu- H':>6} | method"
    )
    lines = [head, "-" * len(head)]
    Q = QUANTITIES.index
    for (d, n, a), row in sorted(results.rows.items()):
        for b, name in enumerate(row["blocks"]):
            v, m = row["values"][b], row["methods"][b]
            P = d * d
            rank = f"{v[1, Q('rank')] / P:.3f}" if v[1, Q("rank")] >= 0 else "-"
            lines.append(
                f"{d:>4} {n:>2} {a:>7} {name:>16} | {v[0, Q('frobenius')]:>9.3e} {v[1, Q('frobenius')]:>9.3e} {v[2, Q('frobenius')]:>9.3e} "
                f"{v[0, Q('trace')]:>10.3e} | {v[0, Q('largest')]:>10.3e} {v[0, Q('smallest')]:>10.3e} {v[0, Q('kappa')]:>9.2e} "
                f"{v[1, Q('kappa')]:>9.2e} {rank:>9} | {v[0, Q('negative_mass')]:>6.3f} | {m[0, Q('largest')]}"
            )
    return "\n".join(lines)


def plot_size_sweep(path: str | Path, out: str | Path | None = None) -> Path:
    """Figure from a size-sweep file: one column per block of the last layer, against d_model (log2 axis).

    Rows: top eigenvalue lambda_max(H) (solid) and |lambda_min(H)| (dashed; omitted where it is below the rank
    tolerance P eps |lambda|_max, i.e. the block is singular); kappa(H) (solid) and kappa(H_o) over
    the numerical range (dashed); negative mass mu_-(H). One colour per (attention, depth). Undetermined values
    (matrix-free kappa of an indefinite or singular block) are left out.

    Returns:
        The PNG path (default: next to the data, same stem).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = load_size_sweep(path)
    cfg = res.config
    out = Path(path).with_suffix(".png") if out is None else Path(out)
    combos = [(a, n) for a in cfg.attentions for n in cfg.layers]
    colors = {c: plt.cm.tab10(i % 10) for i, c in enumerate(combos)}
    ds = np.array(cfg.d_models)
    fig, axes = plt.subplots(3, len(cfg.blocks), figsize=(3.8 * len(cfg.blocks), 9.5), squeeze=False, sharex=True)

    def series(a, n, block, kind, quantity):
        return np.array([res.get(d, n, a, block, kind, quantity)[0] for d in cfg.d_models])

    for j, block in enumerate(cfg.blocks):
        for a, n in combos:
            c = colors[(a, n)]
            label = f"{a}, {n} layer{'s' if n > 1 else ''}"
            top, bottom = series(a, n, block, "H", "largest"), series(a, n, block, "H", "smallest")
            # a bottom end within the rank tolerance is round-off (the block is singular): not drawn
            rtol = ds.astype(float) ** 2 * np.finfo(float).eps if cfg.rtol is None else cfg.rtol
            zero = np.abs(bottom) <= rtol * np.maximum(np.abs(top), np.abs(bottom))
            axes[0, j].plot(ds, np.abs(top), "-o", color=c, ms=3, label=label)
            axes[0, j].plot(ds, np.where(zero, np.nan, np.abs(bottom)), "--x", color=c, ms=4)
            axes[1, j].plot(ds, series(a, n, block, "H", "kappa"), "-o", color=c, ms=3, label=label)
            axes[1, j].plot(ds, series(a, n, block, "H_o", "kappa"), "--x", color=c, ms=4)
            axes[2, j].plot(ds, series(a, n, block, "H", "negative_mass"), "-o", color=c, ms=3, label=label)
        axes[0, j].set_title(f"{block} (last layer)")
        for i in (0, 1):
            axes[i, j].set_yscale("log")
        axes[2, j].set_ylim(-0.02, 0.52)
        axes[2, j].set_xscale("log", base=2)
        axes[2, j].set_xlabel("d_model")
    axes[0, 0].set_ylabel(r"$\lambda_{max}(H)$ (solid), $|\lambda_{min}(H)|$ if not ~0 (dashed)")
    axes[1, 0].set_ylabel(r"$\kappa(H)$ (solid), $\kappa(H_o)$ on its range (dashed)")
    axes[2, 0].set_ylabel(r"negative mass $\sum_{\lambda<0}|\lambda| / \sum|\lambda|$ of H")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(
        f"Hessian blocks at initialisation vs size ({cfg.loss.upper()}, batch {cfg.batch}); dense where P <= {cfg.dense_threshold}, else Lanczos/SLQ",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
