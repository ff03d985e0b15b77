"""Hessian spectrum during training: the small pre-LN transformer learns 5-digit addition, curvature at checkpoints.

Adam on fresh addition batches (cross-entropy on the answer digits, float64). At every checkpoint, on a fixed
evaluation batch, the exact Hessian of the whole model is probed with Hessian-vector products: top-k and
smallest eigenvalues (Lanczos), trace (Hutch++), spectral density (stochastic Lanczos quadrature) and the exact
Frobenius norms of the block's diagonal group blocks (Q, K, V, O, LN1, LN2, W1, b1, W2, b2). Checkpoints
(parameters, Adam state, curvature) go to HDF5 as they are reached, and an interrupted run resumes from the
last one; the figures are drawn from the file.

Quick default: d_model 8 (P = 1236), 600 steps, a checkpoint every 100 (7 curvature evaluations: about
25 s of one core; several times that on a busy machine).
``--full``: d_model 16, d_mlp 64, 3000 steps, batch 64, a checkpoint every 250, top 10 eigenvalues,
8 x 50 SLQ.

    python -m simulations.training_curvature [--full] [--steps 600] [--out results/training_curvature]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from tqdm.auto import tqdm

from hessian.adam import adam_step
from hessian.addition import addition_data
from hessian.block_groups import block_groups
from hessian.estimators import frobenius_norm, spectral_density, top_eigenvalues, trace
from hessian.models import Transformer
from hessian.operators import hessian_operator
from particles.checks import check_int
from particles.io import ResultStore
from simulations._addition_model import ANSWER, addition_problem, addition_transformer
from simulations.common.cli import (
    FullDefault,
    config_or_exit,
    integer,
    real,
    refuse_existing,
    set_threads,
    study_parser,
)
from simulations.common.figures import finish, panels
from simulations.common.store import stored_config

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
            check_int(name, getattr(self, name), low=1)
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
        return addition_transformer(
            d_model=self.d_model, d_mlp=self.d_mlp, layer_norm=self.layer_norm, n_layers=self.n_layers
        )

    @property
    def checkpoints(self) -> list[int]:
        """Steps at which curvature is measured: 0, every ``checkpoint_every``, and the last step."""
        out = list(range(0, self.steps + 1, self.checkpoint_every))
        return out if out[-1] == self.steps else out + [self.steps]

    def name(self) -> str:
        norm = "pre" if self.layer_norm else "none"
        return (
            f"training_norm={norm}_layers={self.n_layers}_d={self.d_model}_steps={self.steps}_lr={self.lr:g}"
            f"_batch={self.batch}"
        )


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


def run(config: TrainingConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Train, saving parameters, Adam state and curvature at every checkpoint to HDF5; a rerun resumes.

    Store (``particles.io.ResultStore``): key ``step={s:07d}`` per checkpoint with the curvature of
    ``checkpoint_curvature``, the training loss of the last step (``train_loss``), and the parameters and Adam
    moments as datasets ``param:<name>``, ``adam_m:<name>``, ``adam_v:<name>``. Training resumes from the last
    saved checkpoint (Adam state included), so an interrupted run ends with the same numbers.
    """
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})
    model = config.model()
    eval_tokens, eval_target, loss = addition_problem(model, config.eval_batch, seed=config.eval_seed)
    a0, a1 = ANSWER
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
    # The curvature at a checkpoint costs far more than the Adam steps before it: the bar counts checkpoints.
    total = len(config.checkpoints)
    bar = tqdm(total=total, initial=total - len(todo), desc="checkpoints", unit="checkpoint", disable=not progress)
    step, train_loss = start, float("nan")

    def value_and_grad(p: dict[str, Tensor], tokens: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return torch.func.grad_and_value(lambda q: loss(model(q, tokens), tokens[:, a0:a1]))(p)[::-1]

    for target_step in todo:
        while step < target_step:
            tokens = addition_data(config.batch, seed=config.data_seed + step)[0]
            value, grads = value_and_grad(params, tokens)
            step += 1
            adam_step(
                params, grads, m, v, step, lr=config.lr, beta1=config.beta1, beta2=config.beta2, eps=config.adam_eps
            )
            train_loss = float(value)
        bar.set_postfix_str(f"curvature at step {target_step}")
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
        bar.update(1)
        bar.set_postfix(loss=f"{curv['loss']:.3f}", top=f"{curv['top'][0]:.2f}")
    bar.close()
    return path


@dataclass(frozen=True)
class TrainingResults:
    """A training-curvature file in memory (checkpoints in step order; missing ones are left out).

    Attributes:
        config: the run's ``TrainingConfig``.
        groups: (G,) names of the parameter groups.
        steps: (C,) training step of each checkpoint.
        loss: (C,) evaluation loss.
        train_loss: (C,) loss of the last training batch.
        top: (C, k) largest eigenvalues.
        bottom: (C,) smallest eigenvalue.
        trace: (C,) Hutch++ trace, with ``trace_se`` (C,) its standard error.
        block_norms: (C, G) exact Frobenius norms of the group blocks.
        slq_nodes: (C, probes, m) SLQ nodes, with ``slq_weights`` of the same shape.
        num_params: parameters of the Hessian.
        seconds: computing time.
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


def load(path: str | Path) -> TrainingResults:
    """Read a training-curvature file."""
    config = stored_config(path, TrainingConfig, KIND)
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


def _beside(path: str | Path, suffix: str) -> Path:
    path = Path(path)
    return path.with_name(path.stem + suffix)


def plot_spectrum(path: str | Path, *, fig=None, ax=None, save=True) -> Figure:
    """Loss, eigenvalues, trace and block norms against step; saved as ``<stem>_spectrum.png``.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the panels into; None for a new one.
        ax: the axes to draw on instead (four, row by row).
        save: True for the PNG beside the data, False for no file, or a path.
    """
    res = load(path)
    s = res.steps
    fig, axes = panels(2, 2, size=(13, 8.5), fig=fig, ax=ax)
    ax = axes[0, 0]
    ax.plot(s, res.loss, "o-", label="evaluation batch")
    ax.plot(s[1:], res.train_loss[1:], "s--", ms=3, label="last training batch")
    ax.set_yscale("log")
    ax.set_title("cross-entropy loss")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.85, res.top.shape[1]))
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
    gcol = matplotlib.colormaps["tab10"](np.arange(len(res.groups)) % 10)
    for g, group in enumerate(res.groups):
        ax.plot(s, res.block_norms[:, g], "o-", ms=3, color=gcol[g], label=group)
    ax.set_yscale("log")
    ax.set_title("exact $\\|H[g, g]\\|_F$ of the block's parameter groups")
    ax.legend(fontsize=7, ncol=2)
    for ax in axes.ravel():
        ax.set_xlabel("training step")
    fig.suptitle(res.config.name().replace("_", " "), fontsize=9)
    return finish(fig, save, _beside(path, "_spectrum.png"))


def plot_density(path: str | Path, *, num_densities: int = 4, fig=None, ax=None, save=True) -> Figure:
    """SLQ spectral densities of up to ``num_densities`` checkpoints; saved as ``<stem>_density.png``.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the panels into; None for a new one.
        ax: the axes to draw on instead (one Axes).
        save: True for the PNG beside the data, False for no file, or a path.
    """
    res = load(path)
    s = res.steps
    picks = np.unique(np.linspace(0, len(s) - 1, min(num_densities, len(s))).round().astype(int))
    w = res.slq_weights[picks]
    x = res.slq_nodes[picks][w > 0]
    lo, hi = float(x.min()), float(x.max())
    width = 0.01 * (hi - lo) if hi > lo else 1e-3
    grid = np.linspace(lo - 5 * width, hi + 5 * width, 600)
    fig, ax = panels(1, 1, size=(8, 4.8), fig=fig, ax=ax)
    plasma = matplotlib.colormaps["plasma"]
    peak = 0.0
    for j, c in enumerate(picks):
        dens = res.density(c, grid, width)
        peak = max(peak, float(dens.max()))
        ax.plot(grid, dens, color=plasma(j / max(1, len(picks) - 1) * 0.85), label=f"step {s[c]}")
    ax.set_yscale("log")
    # seven decades below the bulk: enough to show single outlier eigenvalues (weight ~ 1/P) and no further
    ax.set_ylim(peak * 1e-7, peak * 3)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("spectral density (SLQ, Gaussian kernel)")
    ax.set_title(
        f"Hessian spectral density during training (kernel width {width:.2g}; "
        f"{res.config.slq_probes} probes x {res.config.slq_steps} Lanczos steps)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return finish(fig, save, _beside(path, "_density.png"))


def plot(path: str | Path, *, save=True) -> tuple[Figure, Figure]:
    """Both figures of the file (``plot_spectrum``, ``plot_density``); ``save`` True writes them beside it."""
    return plot_spectrum(path, save=save), plot_density(path, save=save)


# ---------------------------------------------------------------------------------------------------------
# command line


#: Time measured on the 2-core development machine (one core's worth; quick default).
TIMING = "quick default ~25 s; --full tens of minutes"


def build_parser() -> argparse.ArgumentParser:
    p = study_parser("training_curvature", __doc__, seed=1234, seed_help="seed of the model's weights", timing=TIMING)
    p.add_argument("--d-model", type=integer(1), default=FullDefault(8, 16), help="model width")
    p.add_argument("--d-mlp", type=integer(1), default=None, help="MLP width (default: 4 d_model)")
    p.add_argument("--steps", type=integer(1), default=FullDefault(600, 3000), help="Adam steps")
    p.add_argument(
        "--checkpoint-every", type=integer(1), default=FullDefault(100, 250), help="steps between curvature checkpoints"
    )
    p.add_argument("--batch", type=integer(1), default=FullDefault(32, 64), help="training batch")
    p.add_argument("--eval-batch", type=integer(1), default=FullDefault(32, 64), help="curvature batch")
    p.add_argument("--lr", type=real(above=0.0), default=3e-3, help="Adam learning rate")
    p.add_argument("--top-k", type=integer(1), default=FullDefault(5, 10), help="largest eigenvalues computed")
    p.add_argument("--norm", choices=("pre", "none"), default="pre", help="pre-LN block or no LayerNorm")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    d = args.d_model
    full = args.full
    return TrainingConfig(
        d_model=d,
        d_mlp=4 * d if args.d_mlp is None else args.d_mlp,
        layer_norm=args.norm == "pre",
        steps=args.steps,
        checkpoint_every=args.checkpoint_every,
        batch=args.batch,
        eval_batch=args.eval_batch,
        lr=args.lr,
        top_k=args.top_k,
        trace_matvecs=99 if full else 60,
        slq_probes=8 if full else 3,
        slq_steps=50 if full else 25,
        model_seed=args.seed,
    )


def output_paths(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """The results file of the command line's config and the files drawn from it."""
    path = args.out / f"{config_from_args(args).name()}.h5"
    return path, [_beside(path, s) for s in ("_spectrum.png", "_density.png", "_summary.txt")]


def summary(path: str | Path) -> str:
    """The printed summary of a file: one line per checkpoint."""
    res = load(path)
    lines = [res.config.name(), f"P = {res.num_params} parameters, {res.seconds:.1f} s of curvature computation", ""]
    lines.append(
        f"{'step':>6s} {'eval loss':>9s} {'lambda_1':>9s} {'lambda_k':>9s} {'lambda_min':>10s} {'trace':>16s}  "
        "largest diagonal group block"
    )
    for c, s in enumerate(res.steps):
        g = int(np.argmax(res.block_norms[c]))
        lines.append(
            f"{s:6d} {res.loss[c]:9.4f} {res.top[c, 0]:9.3f} {res.top[c, -1]:9.3f} {res.bottom[c]:10.3f} "
            f"{res.trace[c]:8.2f} +- {res.trace_se[c]:5.2f}  {res.groups[g]} {res.block_norms[c, g]:.2e}"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    path = run(config_from_args(args), path, progress=not args.no_progress)
    plot(path)
    text = summary(path)
    _beside(path, "_summary.txt").write_text(text)
    print(text)
    png_spectrum, png_density = _beside(path, "_spectrum.png"), _beside(path, "_density.png")
    print(f"saved {path}, {png_spectrum}, {png_density} and {path.stem}_summary.txt")
    return path


if __name__ == "__main__":
    main()
