"""Spectra and conditioning of the attention Hessian blocks across model sizes.

For d_model x depth x attention (softmax / linear), the reference transformer on 5-digit addition at its GPT-2
initialisation: Frobenius norms of H, H_o, H_f, trace, extreme eigenvalues, condition number over the numerical
range, rank and negative mass of the W_Q, W_K, W_V, W_O blocks of the last layer. Exact dense spectra up to
d_model 64 (P = 4096), Lanczos / Hutch++ / Hutchinson / SLQ above (the method of each number is in the file).
Each row goes to HDF5 as it finishes (a rerun resumes); the table and the figure are then made from the file.

Quick default: d_model 8, 16, 32 and 1-2 layers (about 3.3 min of one core).
``--full``: d_model 8..128 and 1-3 layers (tens of minutes to hours: d_model 128 is matrix-free).

    python -m simulations.size_sweep
    nice -n 10 python -m simulations.size_sweep --full

The model of a row is the growth study's reference transformer
(``_growth_points.build``: ``batch`` addition sequences, logits of the answer positions, GPT-2 init, one head,
d_head = d_model, d_mlp = 4 d_model, no LayerNorm, residual 1), drawn once at ``model_seed``; for each chosen
weight block (W_Q, W_K, W_V, W_O of the last layer, or of every layer) the diagonal blocks of H, H_o and H_f
are summarised by ``QUANTITIES`` (``_spectral_summary``): exactly where P = d_model^2 <= ``dense_threshold``,
matrix-free above.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from tqdm.auto import tqdm

from hessian import CurvatureProblem
from hessian.dense import hessian_split
from hessian.kinds import KINDS
from particles.io import ResultStore
from simulations.common.store import stored_fields

from ._growth_points import GrowthConfig, Setup, build
from ._spectral_summary import METHODS, QUANTITIES, dense_summary, operator_summary
from .common.cli import FullDefault, config_or_exit, integer, refuse_existing, set_threads, study_parser
from .common.figures import figure_path, finish, panels
from .common.naming import config_digest, result_path

KIND = "hessian_size_sweep"


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

    def label(self) -> str:
        """Readable head of the file name."""
        return f"size_sweep_d={'-'.join(map(str, self.d_models))}_layers={'-'.join(map(str, self.layers))}"

    def name(self) -> str:
        """File stem: the label and the digest of every field."""
        return f"{self.label()}_{config_digest(self)}"


def row_key(d_model: int, n_layers: int, attention: str) -> str:
    return f"d{d_model:04d}_layers{n_layers}_{attention}"


def row_setup(config: SizeSweepConfig, d_model: int, n_layers: int, attention: str) -> tuple[Setup, dict]:
    """``(Setup, params)`` of one row: the reference transformer at its GPT-2 initialisation, float64."""
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
            curvatures = CurvatureProblem(*problem, [name])
            ops = [curvatures.curvature(kind).operator() for kind in KINDS]
            parts = [operator_summary(op, config) for op in ops]
        for k, (v, s, m) in enumerate(parts):
            values[b, k], stderr[b, k], methods[b, k] = v, s, m
    return {"blocks": names, "values": values, "stderr": stderr, "methods": methods}


# ---------------------------------------------------------------------------------------------------------
# the file

#: fields the result store cannot hold as attributes (sequences, None): stored as JSON text
_JSON_FIELDS = ("d_models", "layers", "attentions", "blocks", "rtol")


def store(config: SizeSweepConfig, path: str | Path) -> ResultStore:
    """The result store of ``config`` at ``path`` (a file of another config is a ValueError)."""
    fields = dataclasses.asdict(config)
    for name in _JSON_FIELDS:
        fields[name] = json.dumps(fields[name])
    return ResultStore(path, {"kind": KIND, **fields})


def run(config: SizeSweepConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Run (or resume) the sweep, saving each (d_model, n_layers, attention) row as it finishes.

    Store keys ``d{d_model:04d}_layers{n}_{attention}`` hold ``blocks`` (space-separated parameter names),
    ``values`` and ``stderr`` (B, 3, Q) float64, ``methods`` (B, 3, Q) indices into ``METHODS``, and
    ``d_model``, ``n_layers``, ``attention``, ``seconds``.

    Args:
        config: the grid.
        path: HDF5 file; an existing file must hold the same config, its rows are skipped.
        progress: show a tqdm bar.

    Returns:
        The path of the HDF5 file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = store(config, path)
    done = set(results.keys())
    todo = [row for row in config.rows() if row_key(*row) not in done]
    bar = tqdm(todo, desc="size sweep", disable=not progress)
    for d, n, a in bar:
        bar.set_postfix_str(f"d={d} layers={n} {a}")
        t0 = time.perf_counter()
        row = measure_row(config, d, n, a)
        codes = np.vectorize(METHODS.index, otypes=[np.int8])(row["methods"])
        results.save(
            row_key(d, n, a),
            blocks=" ".join(row["blocks"]),
            values=row["values"],
            stderr=row["stderr"],
            methods=codes,
            d_model=d,
            n_layers=n,
            attention=a,
            seconds=time.perf_counter() - t0,
        )
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


def load(path: str | Path) -> SizeSweepResults:
    """Read a size-sweep file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    fields = stored_fields(path, SizeSweepConfig, KIND)
    for name in _JSON_FIELDS:
        fields[name] = json.loads(fields[name])
    config = SizeSweepConfig(**fields)
    results = store(config, path)
    rows = {}
    for key in results.keys():  # noqa: SIM118 (a ResultStore, not a dict)
        row = results.load(key)
        rows[(int(row["d_model"]), int(row["n_layers"]), str(row["attention"]))] = {
            "blocks": row["blocks"].split(" "),
            "values": row["values"],
            "stderr": row["stderr"],
            "methods": np.array(METHODS, dtype=object)[row["methods"]],
            "seconds": float(row["seconds"]),
        }
    return SizeSweepResults(config, rows)


# ---------------------------------------------------------------------------------------------------------
# table and figure, both from the file


def format_table(results: SizeSweepResults) -> str:
    """Plain-text table, one line per (row, block): norms of H, H_o, H_f, tr H, extreme eigenvalues, kappa, rank,
    negative mass."""
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
                f"{d:>4} {n:>2} {a:>7} {name:>16} | {v[0, Q('frobenius')]:>9.3e} {v[1, Q('frobenius')]:>9.3e} "
                f"{v[2, Q('frobenius')]:>9.3e} {v[0, Q('trace')]:>10.3e} | {v[0, Q('largest')]:>10.3e} "
                f"{v[0, Q('smallest')]:>10.3e} {v[0, Q('kappa')]:>9.2e} {v[1, Q('kappa')]:>9.2e} {rank:>9} | "
                f"{v[0, Q('negative_mass')]:>6.3f} | {m[0, Q('largest')]}"
            )
    return "\n".join(lines)


def plot(path: str | Path, *, fig=None, ax=None, save=True) -> Figure:
    """Figure from a size-sweep file: one column per block of the last layer, against d_model (log2 axis).

    Rows: top eigenvalue lambda_max(H) (solid) and |lambda_min(H)| (dashed; omitted where it is below the rank
    tolerance P eps |lambda|_max, i.e. the block is singular); kappa(H) (solid) and kappa(H_o) over
    the numerical range (dashed); negative mass mu_-(H). One colour per (attention, depth). Undetermined values
    (matrix-free kappa of an indefinite or singular block) are left out.

    Args:
        path: the sweep's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the 3 x blocks panels into; None for a new one.
        ax: the axes to draw on instead (3 rows, one column per block, row by row).
        save: True for the PNG beside ``path``, False for no file, or a path.
    """
    res = load(path)
    cfg = res.config
    combos = [(a, n) for a in cfg.attentions for n in cfg.layers]
    colors = {c: colormaps["tab10"](i % 10) for i, c in enumerate(combos)}
    ds = np.array(cfg.d_models)
    fig, axes = panels(
        3, len(cfg.blocks), size=(3.8 * len(cfg.blocks) + 0.6, 9.5), fig=fig, ax=ax, squeeze=False, sharex=True
    )

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
    # Short axis labels (long ones are cut at the figure's edge); the line styles are told in each row's first title.
    axes[0, 0].set_ylabel(r"$\lambda_{max}(H)$, $|\lambda_{min}(H)|$")
    axes[1, 0].set_ylabel(r"condition number $\kappa$")
    axes[2, 0].set_ylabel("negative mass of H")
    for j in range(len(cfg.blocks)):
        axes[1, j].set_title(r"$\kappa(H)$ solid, $\kappa(H_o)$ on its range dashed", fontsize=8)
        axes[2, j].set_title(r"$\sum_{\lambda<0}|\lambda| / \sum|\lambda|$", fontsize=8)
    styles = [
        Line2D([], [], color="k", ls="-", marker="o", ms=3, label=r"$\lambda_{max}(H)$"),
        Line2D([], [], color="k", ls="--", marker="x", ms=4, label=r"$|\lambda_{min}(H)|$ (left out where ~0)"),
    ]
    axes[0, 0].add_artist(axes[0, 0].legend(handles=styles, fontsize=7, loc="lower left"))
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.suptitle(
        f"Hessian blocks at initialisation vs size ({cfg.loss.upper()}, batch {cfg.batch}); "
        f"dense where P <= {cfg.dense_threshold}, else Lanczos/SLQ",
        fontsize=10,
    )
    return finish(fig, save, figure_path(path), dpi=120)


# ---------------------------------------------------------------------------------------------------------
# command line


#: Time measured on the 2-core development machine (one core's worth; quick default).
TIMING = "quick default ~3.3 min of one core; --full hours"

#: The loss names of the command line (as in ``hessian``) and of the config.
LOSS_NAMES = {"cross_entropy": "ce", "mse": "mse"}


def build_parser():
    p = study_parser("size_sweep", __doc__, seed=1234, seed_help="seed of the models' weights", timing=TIMING)
    p.add_argument(
        "--d-models", type=integer(1), nargs="+", default=FullDefault((8, 16, 32), (8, 16, 32, 64, 128)), help="widths"
    )
    p.add_argument("--layers", type=integer(1), nargs="+", default=FullDefault((1, 2), (1, 2, 3)), help="depths")
    p.add_argument(
        "--attentions",
        nargs="+",
        choices=("softmax", "linear"),
        default=["softmax", "linear"],
        help="attention kinds",
    )
    p.add_argument(
        "--blocks",
        nargs="+",
        choices=("W_Q", "W_K", "W_V", "W_O"),
        default=["W_Q", "W_K", "W_V", "W_O"],
        help="attention weight blocks measured",
    )
    p.add_argument("--all-layers", action="store_true", help="measure the blocks of every layer, not only the last")
    p.add_argument("--loss", choices=tuple(LOSS_NAMES), default="cross_entropy", help="loss on the answer digits")
    p.add_argument("--batch", type=integer(1), default=64, help="addition sequences")
    p.add_argument("--dense-threshold", type=integer(1), default=4096, help="largest block size P diagonalised densely")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def config_from_args(args) -> SizeSweepConfig:
    return SizeSweepConfig(
        d_models=tuple(args.d_models),
        layers=tuple(args.layers),
        attentions=tuple(args.attentions),
        blocks=tuple(args.blocks),
        all_layers=args.all_layers,
        loss=LOSS_NAMES[args.loss],
        batch=args.batch,
        dense_threshold=args.dense_threshold,
        model_seed=args.seed,
    )


def output_paths(args):
    """The results file of the command line's config and the files drawn from it."""
    config = config_from_args(args)
    path = result_path(args.out, config.label(), config)
    return path, [figure_path(path), path.with_name(path.stem + "_table.txt")]


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    path = run(config_from_args(args), path, progress=not args.no_progress)
    plot(path)
    png = figure_path(path)
    table = format_table(load(path))
    path.with_name(path.stem + "_table.txt").write_text(table + "\n")
    print(table)
    print(f"saved {path}, {png} and {path.stem}_table.txt")
    return path


if __name__ == "__main__":
    main()
