"""Loss-landscape pictures of the reference 1-layer transformer (d_model 128) on 5-digit addition.

At initialisation and after a short Adam run (no stored checkpoint of this model exists: the training-curvature
runs are of d_model 8 and 16 pre-LN models), on the reference batch (64 sequences of 18 tokens, seed 1234,
cross-entropy on the answer digits; float64): the loss along the top Hessian eigenvector, on the plane of the
top two eigenvectors and on the plane of two random filter-normalised directions (Li et al., 2018), each with the
second-order model from the exact gradient and Hessian-vector products (dashed). Lines and planes go to HDF5 as
they are finished (a rerun resumes); one figure per point is drawn from the file.

Quick default: 150 Adam steps, a 31-point line and 15 x 15 planes: 38 s measured with ``--threads 1`` under a
load of 4 on the 2-core machine (5.5 minutes with two threads under a load of 7: each operation's thread
barrier then waits for a time slice; prefer ``--threads 1`` on a busy machine).
``--full``: 1000 Adam steps, a 101-point line and 51 x 51 planes.

    python -m simulations.loss_landscape [--full] [--out results/loss_landscape]

The pictures. At initialisation and after a short Adam run (``hessian.adam.adam_step``,
fresh batches as in ``run_training_curvature``), on the fixed reference batch (64 sequences, seed 1234,
cross-entropy on the answer digits), the loss is evaluated on:

* a line along the top Hessian eigenvector v_1 (Lanczos), ``t`` in ``[-s, s]``;
* the plane of the top two eigenvectors (v_1, v_2), ``[-s, s]^2``;
* the plane of two random filter-normalised directions (Li et al., 2018), ``[-r, r]^2``;

with ``s = eig_span * sqrt(2 / lambda_1)`` (where the quadratic model along v_1 has risen by ``eig_span^2``)
and the second-order model ``q = L0 + c.g + c^T H c / 2`` of the same grid beside it. Each finished
line or plane goes to HDF5 at once (``particles.io.ResultStore``; a rerun skips it) and the figures are
drawn from the file.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from torch import Tensor
from tqdm.auto import tqdm

from hessian.adam import adam_step
from hessian.addition import addition_data, answer_positions
from hessian.landscape import loss_landscape, quadratic_model
from hessian.landscape_directions import random_filter_normalized_directions, top_eigenvector_directions
from particles.checks import check_int
from particles.io import ResultStore
from simulations._addition_model import addition_problem
from simulations.common.store import stored_config
from simulations.training_curvature import TrainingConfig

from .common.cli import FullDefault, config_or_exit, integer, real, refuse_existing, set_threads, study_parser
from .common.figures import finish, new_figure

KIND = "hessian_loss_landscape"
PIECES = ("eig_line", "eig_plane", "random_plane")


@dataclass(frozen=True, kw_only=True)
class LandscapeConfig:
    """The model, the trained point and the grids.

    Attributes:
        d_model, d_mlp: the transformer (one layer, one head, d_head = d_model, no LayerNorm: the reference).
        batch, data_seed: the fixed batch the landscape is drawn on (64 sequences, seed 1234, as in the paper).
        model_seed: initialisation seed.
        train_steps: Adam steps to the trained point (0: initialisation only); train_batch, lr: its batch and
            step size; train_seed: batch ``s`` of training is drawn with seed ``train_seed + s``.
        points_line: grid points of the line; points_plane: points per axis of the planes.
        eig_span: eigenvector grids span ``+-eig_span * sqrt(2 / lambda_1)``.
        random_span: filter-normalised grids span ``+-random_span`` (Li et al. use 1).
        direction_seed: seed of the random directions; lanczos_tol: ARPACK tolerance.
        chunk_size: grid points per vmap call (0: chosen from the memory limit).
    """

    d_model: int = 128
    d_mlp: int = 512
    batch: int = 64
    data_seed: int = 1234
    model_seed: int = 1234
    train_steps: int = 150
    train_batch: int = 64
    lr: float = 1e-3
    train_seed: int = 100_000
    points_line: int = 31
    points_plane: int = 15
    eig_span: float = 2.0
    random_span: float = 1.0
    direction_seed: int = 0
    lanczos_tol: float = 1e-6
    chunk_size: int = 0

    def __post_init__(self) -> None:
        for name in ("d_model", "d_mlp", "batch", "train_batch", "points_line", "points_plane"):
            check_int(name, getattr(self, name), low=1)
        check_int("train_steps", self.train_steps, low=0)
        check_int("chunk_size", self.chunk_size, low=0)
        for name in ("lr", "eig_span", "random_span", "lanczos_tol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite float, got {v!r}")

    def training(self) -> TrainingConfig:
        """The training run (its model is this experiment's model)."""
        return TrainingConfig(
            d_model=self.d_model,
            d_mlp=self.d_mlp,
            layer_norm=False,
            steps=max(self.train_steps, 1),
            batch=self.train_batch,
            lr=self.lr,
            model_seed=self.model_seed,
            data_seed=self.train_seed,
        )

    @property
    def points(self) -> tuple[str, ...]:
        """Parameter points: initialisation, and the trained point when ``train_steps > 0``."""
        return ("init", "trained") if self.train_steps else ("init",)

    def name(self) -> str:
        return (
            f"landscape_d={self.d_model}_batch={self.batch}_steps={self.train_steps}"
            f"_grid={self.points_line}x{self.points_plane}"
        )


def train(config: LandscapeConfig, *, progress: bool = False) -> tuple[dict[str, Tensor], np.ndarray]:
    """Adam from the initialisation for ``train_steps`` steps (float64), as ``run_training_curvature`` trains.

    Returns:
        (parameters, (train_steps,) training losses).
    """
    tc = config.training()
    model = tc.model()
    a0, a1 = answer_positions(5)
    _, _, loss = addition_problem(model, 1)
    params = model.init(seed=config.model_seed)
    m = {k: torch.zeros_like(p) for k, p in params.items()}
    v = {k: torch.zeros_like(p) for k, p in params.items()}
    losses = []
    for step in tqdm(range(config.train_steps), desc="training", disable=not progress, leave=False):
        tokens = addition_data(tc.batch, seed=tc.data_seed + step)[0]
        grads, value = torch.func.grad_and_value(lambda q, x=tokens: loss(model(q, x), x[:, a0:a1]))(params)
        adam_step(params, grads, m, v, step + 1, lr=tc.lr, beta1=tc.beta1, beta2=tc.beta2, eps=tc.adam_eps)
        losses.append(float(value))
    return params, np.array(losses)


def _key(point: str, piece: str) -> str:
    return f"{point}_{piece}"


def store(config: LandscapeConfig, path: str | Path) -> ResultStore:
    """The result store of ``config`` at ``path`` (a file of another config is a ValueError)."""
    return ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})


def run(config: LandscapeConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Compute every line and plane of ``config``, each saved as soon as it is done; a rerun resumes.

    Store keys: ``trained_params`` (``param:<name>`` datasets and ``train_loss``), and ``<point>_<piece>``
    for point in ``config.points``, piece in ``PIECES``, with ``axes_0`` [, ``axes_1``], ``values``,
    ``quadratic``, ``loss0``, ``slopes``, ``curvature``, ``eigenvalues`` and ``residuals`` (eigen pieces),
    ``seconds``, ``chunk_size``.
    """
    if not isinstance(config, LandscapeConfig):
        raise TypeError(f"config must be a LandscapeConfig, got {type(config).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = store(config, path)
    model = config.training().model()
    tokens, target, loss = addition_problem(model, config.batch, seed=config.data_seed)
    loss_fn = lambda p: loss(model(p, tokens), target)
    chunk = config.chunk_size or None
    todo = [(pt, pc) for pt in config.points for pc in PIECES if not results.done(_key(pt, pc))]
    bar = tqdm(total=len(todo), desc="landscapes", disable=not progress)
    for point in config.points:
        if all(results.done(_key(point, pc)) for pc in PIECES):
            continue
        if point == "init":
            params = model.init(seed=config.model_seed)
        else:
            if not results.done("trained_params"):
                trained, losses = train(config, progress=progress)
                results.save(
                    "trained_params", train_loss=losses, **{"param:" + k: t.numpy() for k, t in trained.items()}
                )
            saved = results.load("trained_params")
            params = {k: torch.as_tensor(saved["param:" + k]) for k in model.param_shapes()}
        eig = None
        for piece in PIECES:
            if results.done(_key(point, piece)):
                continue
            t0 = time.perf_counter()
            extra = {}
            if piece == "random_plane":
                dirs = random_filter_normalized_directions(params, config.direction_seed)
                axis = np.linspace(-config.random_span, config.random_span, config.points_plane)
                grid = (axis, axis)
            else:
                if eig is None:
                    eig = top_eigenvector_directions(
                        model, loss, params, tokens, target, k=2, tol=config.lanczos_tol, seed=config.direction_seed
                    )
                span = config.eig_span * math.sqrt(2 / max(eig.eigenvalues[0], 1e-12))
                extra = {"eigenvalues": eig.eigenvalues, "residuals": eig.residuals}
                if piece == "eig_line":
                    dirs, grid = eig.directions[:1], (np.linspace(-span, span, config.points_line),)
                else:
                    axis = np.linspace(-span, span, config.points_plane)
                    dirs, grid = eig.directions, (axis, axis)
            land = loss_landscape(loss_fn, params, dirs, grid, chunk_size=chunk, progress=progress)
            quad = quadratic_model(model, loss, params, tokens, target, dirs, grid)
            axes = {f"axes_{k}": a for k, a in enumerate(land.axes)}
            results.save(
                _key(point, piece),
                values=land.values,
                quadratic=quad.values,
                loss0=land.loss0,
                slopes=quad.slopes,
                curvature=quad.curvature,
                seconds=time.perf_counter() - t0,
                chunk_size=land.chunk_size,
                **axes,
                **extra,
            )
            bar.update(1)
            bar.set_postfix(point=point, piece=piece)
    bar.close()
    return path


def load(path: str | Path) -> tuple[LandscapeConfig, dict[str, dict]]:
    """(config, dict ``<point>_<piece>`` -> saved arrays, plus ``trained_params`` when present)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    config = stored_config(path, LandscapeConfig, KIND)
    results = store(config, path)
    return config, {k: results.load(k) for k in results.keys()}  # noqa: SIM118 (a ResultStore, not a dict)


def _levels(values: np.ndarray, n: int = 14) -> np.ndarray:
    # up to the 90th percentile: the far corners of a plane can be orders of magnitude higher
    lo, hi = float(values.min()), float(np.percentile(values, 90))
    return np.linspace(lo, hi if hi > lo else lo + 1.0, n)


def point_figure_path(path: str | Path, point: str) -> Path:
    """Where the figure of parameter point ``point`` goes: ``<stem>_<point>.png`` next to the data."""
    return Path(path).with_name(f"{Path(path).stem}_{point}.png")


def plot(path: str | Path, *, save=True) -> list[Figure]:
    """One figure per parameter point, drawn from the file and saved as ``<stem>_<point>.png`` next to it.

    Panels: the loss along v_1 with the quadratic model dashed; ``|L - q|`` against ``|t|`` (log-log, with a
    ``t^3`` guide); contours of the (v_1, v_2) and random filter-normalised planes, the quadratic model as
    dashed contours at the same levels; the two planes as surfaces.
    """
    config, data = load(path)
    figures = []
    for point in config.points:
        if not all(_key(point, pc) in data for pc in PIECES):
            continue
        line, eplane, rplane = (data[_key(point, pc)] for pc in PIECES)
        lam = line["eigenvalues"]
        fig = new_figure(16, 9.5, layout=None)
        ax = fig.add_subplot(2, 3, 1)
        t = line["axes_0"]
        ax.plot(t, line["values"], "-", color="C0", label="loss $L(w + t v_1)$")
        ax.plot(t, line["quadratic"], "--", color="C3", label="second-order model $q(t)$")
        ax.set_xlabel("t (unit eigenvector $v_1$)")
        ax.set_title(f"along the top eigenvector, $\\lambda_1$ = {lam[0]:.3g}")
        ax.legend(fontsize=8)
        ax = fig.add_subplot(2, 3, 4)
        err = np.abs(line["values"] - line["quadratic"])
        for side, sel, mk in (("t > 0", t > 0, "o"), ("t < 0", t < 0, "s")):
            ax.loglog(np.abs(t[sel]), err[sel], mk, ms=4, label=side)
        tt = np.abs(t[t > 0])
        ok = err[t > 0] > 0
        if ok.any():
            c = np.median(err[t > 0][ok] / tt[ok] ** 3)
            ax.loglog(tt, c * tt**3, "k:", lw=1, label="$\\propto |t|^3$")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("|t|")
        ax.set_title("$|L - q|$ along $v_1$")
        ax.legend(fontsize=8)
        for col, (piece, d, label) in enumerate(
            ((PIECES[1], eplane, ("$v_1$", "$v_2$")), (PIECES[2], rplane, ("random $d_1$", "random $d_2$")))
        ):
            a, b = d["axes_0"], d["axes_1"]
            A, B = np.meshgrid(a, b, indexing="ij")
            levels = _levels(d["values"])
            ax = fig.add_subplot(2, 3, 2 + col)
            cs = ax.contourf(A, B, d["values"], levels=levels, cmap="viridis", extend="max")
            ax.contour(A, B, d["quadratic"], levels=levels, colors="w", linestyles="--", linewidths=0.8)
            fig.colorbar(cs, ax=ax, label="loss")
            ax.plot(0, 0, "r+", ms=10)
            ax.set_xlabel(label[0])
            ax.set_ylabel(label[1])
            kind = "top eigenvectors" if piece == PIECES[1] else "filter-normalised directions"
            ax.set_title(f"{kind}: loss (filled), quadratic model (dashed)", fontsize=9)
            ax = fig.add_subplot(2, 3, 5 + col, projection="3d")
            Z = np.minimum(d["values"], levels[-1] * 1.5)
            ax.plot_surface(A, B, Z, cmap="viridis", linewidth=0, alpha=0.9)
            ax.plot_wireframe(
                A, B, np.clip(d["quadratic"], None, levels[-1] * 1.5), color="C3", linewidth=0.4, rstride=2, cstride=2
            )
            ax.set_xlabel(label[0])
            ax.set_ylabel(label[1])
            ax.set_zlabel("loss")
            ax.set_title("surface (loss), wireframe (quadratic model)", fontsize=9)
        where = "at initialisation" if point == "init" else f"after {config.train_steps} Adam steps (lr {config.lr:g})"
        fig.suptitle(
            f"loss landscape of the 1-layer transformer (d_model {config.d_model}, batch {config.batch}) {where}; "
            f"L0 = {float(line['loss0']):.4f}, $\\lambda_1, \\lambda_2$ = {lam[0]:.3g}, {lam[1]:.3g}",
            fontsize=10,
        )
        # explicit margins: tight_layout measures every 3-D axis label and costs seconds
        fig.subplots_adjust(left=0.05, right=0.97, bottom=0.05, top=0.92, wspace=0.3, hspace=0.25)
        finish(fig, save, point_figure_path(path, point), dpi=110)
        figures.append(fig)
    return figures


# ---------------------------------------------------------------------------------------------------------
# command line


#: Time measured on the 2-core development machine (one core's worth; quick default).
TIMING = "quick default ~30 s; --full several minutes"


def build_parser():
    p = study_parser(
        "loss_landscape", __doc__, seed=1234, seed_help="seed of the model's weights", threads=1, timing=TIMING
    )
    p.add_argument("--d-model", type=integer(1), default=128, help="model width")
    p.add_argument("--d-mlp", type=integer(1), default=None, help="MLP width (default: 4 d_model)")
    p.add_argument("--batch", type=integer(1), default=64, help="sequences of the reference batch")
    p.add_argument(
        "--train-steps", type=integer(0), default=FullDefault(150, 1000), help="Adam steps; 0: initialisation only"
    )
    p.add_argument("--lr", type=real(above=0.0), default=1e-3, help="Adam learning rate")
    p.add_argument("--points-line", type=integer(2), default=FullDefault(31, 101), help="points of the line")
    p.add_argument("--points-plane", type=integer(2), default=FullDefault(15, 51), help="points per axis of a plane")
    p.add_argument(
        "--eig-span", type=real(above=0.0), default=2.0, help="eigenvector grids: +- eig_span sqrt(2 / lambda_1)"
    )
    p.add_argument("--random-span", type=real(above=0.0), default=1.0, help="random-direction plane: +- this")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def config_from_args(args) -> LandscapeConfig:
    return LandscapeConfig(
        d_model=args.d_model,
        d_mlp=4 * args.d_model if args.d_mlp is None else args.d_mlp,
        batch=args.batch,
        model_seed=args.seed,
        train_steps=args.train_steps,
        lr=args.lr,
        points_line=args.points_line,
        points_plane=args.points_plane,
        eig_span=args.eig_span,
        random_span=args.random_span,
    )


def output_paths(args):
    """The results file of the command line's config and the files drawn from it."""
    config = config_from_args(args)
    path = args.out / f"{config.name()}.h5"
    return path, [point_figure_path(path, point) for point in config.points] + [
        path.with_name(path.stem + "_summary.txt")
    ]


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    config = config_from_args(args)
    path = run(config, path, progress=not args.no_progress)
    plot(path)
    pngs = [point_figure_path(path, point) for point in config.points]
    config, data = load(path)
    lines = [config.name(), ""]
    for point in config.points:
        line = data[f"{point}_{PIECES[0]}"]
        lam = line["eigenvalues"]
        seconds = sum(float(data[f"{point}_{pc}"]["seconds"]) for pc in PIECES)
        lines.append(
            f"{point:8s} L0 = {float(line['loss0']):.4f}  lambda_1, lambda_2 = {lam[0]:.4g}, {lam[1]:.4g}  "
            f"({seconds:.1f} s)"
        )
        for pc in PIECES:
            d = data[f"{point}_{pc}"]
            rel = np.max(np.abs(d["values"] - d["quadratic"])) / max(float(np.ptp(d["values"])), 1e-300)
            lines.append(
                f"    {pc:13s} loss in [{d['values'].min():.4f}, {d['values'].max():.4f}], "
                f"max |L - q| / range {rel:.3f}"
            )
    summary = "\n".join(lines) + "\n"
    path.with_name(path.stem + "_summary.txt").write_text(summary)
    print(summary)
    print(f"saved {path}, {', '.join(str(p) for p in pngs)} and {path.stem}_summary.txt")
    return path


if __name__ == "__main__":
    main()
