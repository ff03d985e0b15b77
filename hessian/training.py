"""Curvature during training: the small pre-LN transformer learns addition; Hessian diagnostics at checkpoints.

Training: Adam (Kingma & Ba, 2015, bias-corrected, written out so its state can be saved and resumed
bit for bit) on fresh addition batches (batch ``step`` drawn with seed ``data_seed + step``), cross-entropy
on the answer digits, float64. At every checkpoint, on a fixed evaluation batch, the exact Hessian
H = d^2 L / dw^2 of the whole model is probed matrix-free (Hessian-vector products, no approximation of
the operator): top-k eigenvalues and the smallest eigenvalue (implicitly restarted Lanczos, ``top_eigenvalues``),
the trace (Hutch++, ``trace``), the spectral density (stochastic Lanczos quadrature, ``spectral_density``) and
the exact Frobenius norms of the diagonal Hessian blocks of the block's parameter groups
(``hessian.block.GROUPS``). ``simulations/training_curvature.py`` is the command line.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ._checks import check_positive_int
from .addition import addition_data, answer_positions
from .block import addition_problem, block_groups, read_store_config
from .estimators import frobenius_norm, spectral_density, top_eigenvalues, trace
from .models import Transformer
from .operators import hessian_operator

KIND = "hessian_training_curvature"


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Training run and curvature budget.

    Attributes:
        d_model, d_mlp, n_layers, layer_norm: the transformer (d_head = d_model, one head, readout of the answer).
        steps: Adam steps; checkpoint_every: steps between checkpoints (step 0 is one).
        batch: training sequences per step; lr: Adam step size; beta1, beta2, adam_eps: Adam constants.
        eval_batch: sequences of the fixed batch on which curvature is measured (seed ``eval_seed``).
        top_k: largest eigenvalues by Lanczos (the smallest one is added).
        trace_matvecs: Hutch++ products.
        slq_probes, slq_steps: stochastic Lanczos quadrature budget.
    """

    d_model: int = 8
    d_mlp: int = 32
    n_layers: int = 1
    layer_norm: bool = True
    steps: int = 600
    checkpoint_every: int = 100
    batch: int = 32
    lr: float = 3e-3
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    eval_batch: int = 32
    top_k: int = 5
    trace_matvecs: int = 60
    slq_probes: int = 3
    slq_steps: int = 25
    model_seed: int = 1234
    data_seed: int = 1234
    eval_seed: int = 999

    def __post_init__(self) -> None:
        for name in (
            "d_model",
            "d_mlp",
            "n_layers",
            "steps",
            "checkpoint_every",
            "batch",
            "eval_batch",
            "top_k",
            "trace_matvecs",
            "slq_probes",
            "slq_steps",
        ):
            check_positive_int(getattr(self, name), name)
        if self.trace_matvecs < 3:
            raise ValueError(f"trace_matvecs must be >= 3 (Hutch++), got {self.trace_matvecs}")
        for name in ("lr", "adam_eps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite float, got {v!r}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 1):
                raise ValueError(f"{name} must be in [0, 1), got {v!r}")

    def model(self) -> Transformer:
        a0, a1 = answer_positions(5)
        return Transformer(
            n_layers=self.n_layers,
            d_model=self.d_model,
            d_head=self.d_model,
            d_mlp=self.d_mlp,
            layer_norm=self.layer_norm,
            readout=(a0 - 1, a1 - 1),
        )

    @property
    def checkpoints(self) -> list[int]:
        """Steps at which curvature is measured: 0, every ``checkpoint_every``, and the last step."""
        out = list(range(0, self.steps + 1, self.checkpoint_every))
        return out if out[-1] == self.steps else out + [self.steps]

    def name(self) -> str:
        norm = "pre" if self.layer_norm else "none"
        return f"training_norm={norm}_layers={self.n_layers}_d={self.d_model}_steps={self.steps}_lr={self.lr:g}_batch={self.batch}"


def adam_step(
    params: dict[str, Tensor],
    grads: dict[str, Tensor],
    m: dict[str, Tensor],
    v: dict[str, Tensor],
    t: int,
    config: TrainingConfig,
) -> None:
    """One bias-corrected Adam update in place (t = 1, 2, ...): ``w -= lr m_hat / (sqrt(v_hat) + eps)``."""
    b1, b2 = config.beta1, config.beta2
    for name, g in grads.items():
        m[name].mul_(b1).add_(g, alpha=1 - b1)
        v[name].mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = m[name] / (1 - b1**t)
        v_hat = v[name] / (1 - b2**t)
        params[name].sub_(config.lr * m_hat / (v_hat.sqrt() + config.adam_eps))


def checkpoint_curvature(
    model: Transformer,
    params: dict[str, Tensor],
    tokens: Tensor,
    target: Tensor,
    loss,
    config: TrainingConfig,
    *,
    seed: int = 0,
) -> dict:
    """Hessian diagnostics of the whole model at one point (float64, exact Hessian-vector products).

    Returns:
        dict: ``loss``; ``top`` (top_k,) largest eigenvalues and ``top_resid`` their Ritz residuals;
        ``bottom`` the smallest eigenvalue and ``bottom_resid``; ``trace`` and ``trace_se`` (Hutch++);
        ``slq_nodes``, ``slq_weights`` (probes, m) quadrature of the spectral measure (zero-padded, weight 0);
        ``block_norms`` (G,) exact ||H[g, g]||_F of the block's groups; ``num_params``.
    """
    op = hessian_operator(model, loss, params, tokens, target)
    top = top_eigenvalues(op, k=config.top_k, seed=seed)
    bottom = top_eigenvalues(op, k=1, which="SA", seed=seed)
    tr = trace(op, method="hutchpp", num_samples=min(config.trace_matvecs, op.shape[0]), seed=seed)
    sd = spectral_density(op, num_probes=config.slq_probes, num_steps=min(config.slq_steps, op.shape[0]), seed=seed)
    m = max(len(x) for x in sd.nodes)
    nodes, weights = np.zeros((len(sd.nodes), m)), np.zeros((len(sd.nodes), m))
    for i, (x, w) in enumerate(zip(sd.nodes, sd.weights)):
        nodes[i, : len(x)], weights[i, : len(w)] = x, w
    norms = []
    for members in block_groups(model, model.n_layers - 1).values():
        block = hessian_operator(model, loss, params, tokens, target, list(members))
        norms.append(frobenius_norm(block, method="exact").value)
    with torch.no_grad():
        value = float(loss(model(params, tokens), target))
    return dict(
        loss=value,
        top=np.asarray(top.value),
        top_resid=np.asarray(top.stderr),
        bottom=float(bottom.value[0]),
        bottom_resid=float(bottom.stderr[0]),
        trace=float(tr.value),
        trace_se=float(tr.stderr),
        slq_nodes=nodes,
        slq_weights=weights,
        block_norms=np.asarray(norms),
        num_params=int(op.shape[0]),
    )


def _ckpt_key(step: int) -> str:
    return f"step={step:07d}"


def run_training_curvature(config: TrainingConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Train, saving parameters, Adam state and curvature at every checkpoint to HDF5; a rerun resumes.

    Store (``particles.io.ResultStore``): key ``step={s:07d}`` per checkpoint with the curvature of
    ``checkpoint_curvature``, the training loss of the last step (``train_loss``), and the parameters and Adam
    moments as datasets ``param:<name>``, ``adam_m:<name>``, ``adam_v:<name>``. Training resumes from the last
    saved checkpoint (Adam state included), so an interrupted run ends with the same numbers.
    """
    from tqdm.auto import tqdm

    from particles.io import ResultStore

    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})
    model = config.model()
    eval_tokens, eval_target, loss = addition_problem(model, config.eval_batch, seed=config.eval_seed)
    a0, a1 = answer_positions(5)
    params = model.init(seed=config.model_seed)
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v = {k: torch.zeros_like(p) for k, p in params.items()}
    done = [s for s in config.checkpoints if store.done(_ckpt_key(s))]
    start = 0
    if done:
        start = done[-1]
        saved = store.load(_ckpt_key(start))
        params = {k: torch.as_tensor(saved["param:" + k]) for k in params}
        m = {k: torch.as_tensor(saved["adam_m:" + k]) for k in params}
        v = {k: torch.as_tensor(saved["adam_v:" + k]) for k in params}
    todo = [s for s in config.checkpoints if s >= start and not store.done(_ckpt_key(s))]
    bar = tqdm(total=config.steps - start, desc="training", disable=not progress)
    step, train_loss = start, float("nan")

    def value_and_grad(p: dict[str, Tensor], tokens: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return torch.func.grad_and_value(lambda q: loss(model(q, tokens), tokens[:, a0:a1]))(p)[::-1]

    for target_step in todo:
        while step < target_step:
            tokens = addition_data(config.batch, seed=config.data_seed + step)[0]
            value, grads = value_and_grad(params, tokens)
            step += 1
            adam_step(params, grads, m, v, step, config)
            train_loss = float(value)
            bar.update(1)
        t0 = time.perf_counter()
        curv = checkpoint_curvature(model, params, eval_tokens, eval_target, loss, config, seed=target_step)
        arrays = {"param:" + k: t.numpy().copy() for k, t in params.items()}
        arrays.update({"adam_m:" + k: t.numpy().copy() for k, t in m.items()})
        arrays.update({"adam_v:" + k: t.numpy().copy() for k, t in v.items()})
        store.save(
            _ckpt_key(target_step),
            step=target_step,
            train_loss=train_loss,
            seconds=time.perf_counter() - t0,
            **curv,
            **arrays,
        )
        bar.set_postfix(loss=f"{curv['loss']:.3f}", top=f"{curv['top'][0]:.2f}")
    bar.close()
    return path


@dataclass(frozen=True)
class TrainingResults:
    """A training-curvature file in memory (checkpoints in step order; missing ones are left out).

    Attributes:
        config; groups (G,); steps (C,); loss (C,) evaluation loss; train_loss (C,); top (C, k); bottom (C,);
        trace, trace_se (C,); block_norms (C, G); slq_nodes, slq_weights (C, probes, m); num_params; seconds.
    """

    config: TrainingConfig
    groups: tuple[str, ...]
    steps: np.ndarray
    loss: np.ndarray
    train_loss: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    trace: np.ndarray
    trace_se: np.ndarray
    block_norms: np.ndarray
    slq_nodes: np.ndarray
    slq_weights: np.ndarray
    num_params: int
    seconds: float

    def density(self, c: int, grid: np.ndarray, kernel_width: float) -> np.ndarray:
        """Gaussian-smoothed SLQ density of checkpoint c on ``grid`` (integrates to ~1)."""
        x, w = self.slq_nodes[c], self.slq_weights[c]
        k = np.exp(-0.5 * ((grid[:, None, None] - x[None]) / kernel_width) ** 2) / (kernel_width * np.sqrt(2 * np.pi))
        return (k * w[None]).sum(-1).mean(-1)


def load_training_curvature(path: str | Path) -> TrainingResults:
    """Read a training-curvature file."""
    from particles.io import ResultStore

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    config = TrainingConfig(**read_store_config(path, TrainingConfig, KIND))
    store = ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})
    rows = [store.load(_ckpt_key(s)) for s in config.checkpoints if store.done(_ckpt_key(s))]
    if not rows:
        raise ValueError(f"{path} holds no finished checkpoint")
    m = max(r["slq_nodes"].shape[1] for r in rows)

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, m - a.shape[1])))

    get = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    return TrainingResults(
        config=config,
        groups=tuple(block_groups(config.model(), config.n_layers - 1)),
        steps=get("step").astype(int),
        loss=get("loss"),
        train_loss=get("train_loss"),
        top=np.stack([r["top"] for r in rows]),
        bottom=get("bottom"),
        trace=get("trace"),
        trace_se=get("trace_se"),
        block_norms=np.stack([r["block_norms"] for r in rows]),
        slq_nodes=np.stack([pad(r["slq_nodes"]) for r in rows]),
        slq_weights=np.stack([pad(r["slq_weights"]) for r in rows]),
        num_params=int(rows[0]["num_params"]),
        seconds=float(sum(r["seconds"] for r in rows)),
    )


def plot_training_curvature(
    path: str | Path, out: str | Path | None = None, *, num_densities: int = 4
) -> tuple[Path, Path]:
    """Two figures from the file: (1) loss, eigenvalues, trace and block norms against step; (2) SLQ densities.

    Returns:
        (``<stem>_spectrum.png``, ``<stem>_density.png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = load_training_curvature(path)
    base = Path(path) if out is None else Path(out)
    out1, out2 = base.with_name(base.stem + "_spectrum.png"), base.with_name(base.stem + "_density.png")
    s = res.steps
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    ax = axes[0, 0]
    ax.plot(s, res.loss, "o-", label="evaluation batch")
    ax.plot(s[1:], res.train_loss[1:], "s--", ms=3, label="last training batch")
    ax.set_yscale("log")
    ax.set_title("cross-entropy loss")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    colors = plt.cm.viridis(np.linspace(0, 0.85, res.top.shape[1]))
    for i in range(res.top.shape[1]):
        ax.plot(s, res.top[:, i], "o-", ms=3, color=colors[i], label=f"$\\lambda_{{{i + 1}}}$")
    ax.plot(s, res.bottom, "v-", ms=3, color="C3", label="$\\lambda_{\\min}$")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_title(f"Hessian eigenvalues (Lanczos; P = {res.num_params})")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[1, 0]
    ax.errorbar(s, res.trace, yerr=res.trace_se, marker="o", ms=3, capsize=2)
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_title("trace of H (Hutch++, $\\pm$ 1 s.e.)")
    ax = axes[1, 1]
    gcol = plt.cm.tab10(np.arange(len(res.groups)) % 10)
    for g, group in enumerate(res.groups):
        ax.plot(s, res.block_norms[:, g], "o-", ms=3, color=gcol[g], label=group)
    ax.set_yscale("log")
    ax.set_title("exact $\\|H[g, g]\\|_F$ of the block's parameter groups")
    ax.legend(fontsize=7, ncol=2)
    for ax in axes.ravel():
        ax.set_xlabel("training step")
    fig.suptitle(res.config.name().replace("_", " "), fontsize=9)
    fig.tight_layout()
    fig.savefig(out1, dpi=120)
    plt.close(fig)

    picks = np.unique(np.linspace(0, len(s) - 1, min(num_densities, len(s))).round().astype(int))
    w = res.slq_weights[picks]
    x = res.slq_nodes[picks][w > 0]
    lo, hi = float(x.min()), float(x.max())
    width = 0.01 * (hi - lo) if hi > lo else 1e-3
    grid = np.linspace(lo - 5 * width, hi + 5 * width, 600)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    peak = 0.0
    for j, c in enumerate(picks):
        dens = res.density(c, grid, width)
        peak = max(peak, float(dens.max()))
        ax.plot(grid, dens, color=plt.cm.plasma(j / max(1, len(picks) - 1) * 0.85), label=f"step {s[c]}")
    ax.set_yscale("log")
    # seven decades below the bulk: enough to show single outlier eigenvalues (weight ~ 1/P) and no further
    ax.set_ylim(peak * 1e-7, peak * 3)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("spectral density (SLQ, Gaussian kernel)")
    ax.set_title(
        f"Hessian spectral density during training (kernel width {width:.2g}; {res.config.slq_probes} probes x {res.config.slq_steps} Lanczos steps)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out2, dpi=120)
    plt.close(fig)
    return out1, out2
