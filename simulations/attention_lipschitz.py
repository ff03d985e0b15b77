"""Spectral norm of the input Jacobian dF/dX of softmax self-attention against the input scale s (X -> s X).

Dot-product self-attention is not globally Lipschitz (Kim, Papamakarios & Mnih, 2021); a LayerNorm in front
bounds it. For one head (L tokens, width d) and for the same head after a LayerNorm, ||dF/dX||_2 is computed
exactly (SVD of the dense float64 Jacobian, or Lanczos on J^T J with --method lanczos) on a log grid of s for
several random draws, with Gaussian tokens and with one token at the origin (Kim et al.'s construction).
Large-s exponents are fitted (per-draw log-log slopes over s >= s_fit, mean +- s.e.m.) and printed next to the
exponents derived below (0, 2, -1, 0). Each draw goes to HDF5 as it finishes (a rerun resumes); the figure is
drawn from the file, next to it.

Default (L = 16, d = 16, 8 draws, 17 scales from 0.1 to 1000, one torch thread): about 10 s.

    python -m simulations.attention_lipschitz [--n 16] [--d 16] [--draws 8] [--method dense] [--out DIR]

The exponents. The input Jacobian of the head (closed form in ``hessian.closed_form.attention_jacobians``) is
``A (x) W_V^T`` plus score terms that carry the attention covariance ``M2_i`` of the tokens. Along the ray
X -> sX, exponents of ``||dF/dX||_2 ~ s^p`` at large s:

* generic tokens, attention: p = 0. Every score row has a unique maximum, the softmax saturates
  (``a_ij (1 - a_ij) ~ exp(-c s^2)``) and J tends to the hard-attention value term ``A_hard (x) W_V^T``;
* one token at the origin (the construction of Kim et al.), attention: p = 2. Its scores are all 0, so its
  attention stays uniform, ``M2`` of that query is ``s^2 Cov(X)`` and its query-side block
  ``beta W_V^T M2 W_K W_Q^T`` grows like s^2, without bound;
* LayerNorm first, generic tokens: p = -1 (``LN(sX) = LN(X)``, so ``J(sX) = J(X) / s`` once ``s^2 Var >> eps``);
* LayerNorm first, token at the origin: p = 0 (that token's LayerNorm Jacobian is ``P / sqrt(eps)`` at every s):
  bounded, but by a constant of order ``1 / sqrt(eps)``.

For each draw (weights ~ N(0, 1/d), tokens ~ N(0, 1), the same for both layers and both token families) and
each s of a log grid, ``||dF/dX||_2`` is the largest singular value of the exact dense Jacobian
(``hessian.jacobians.jacobian``, LAPACK) or of the matrix-free operator (Lanczos on J^T J). Every
(tokens, draw) goes to HDF5 as it finishes (``particles.io.ResultStore``; a rerun resumes); the figure is
drawn from the file; exponents are per-draw least-squares slopes over s >= s_fit, mean +- s.e.m. over draws.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats
from torch import Tensor
from tqdm.auto import tqdm

from hessian.jacobians import jacobian, jacobian_operator
from hessian.models import SelfAttention, layer_norm
from particles.checks import check_int
from particles.io import ResultStore
from simulations.common.store import stored_config

from .common.cli import config_or_exit, integer, real, refuse_existing, set_threads, study_parser
from .common.figures import figure_path, finish, panels
from .common.fits import compare_with_theory, fit_line

KIND = "attention_lipschitz"
LAYERS = ("attention", "ln_attention")
TOKENS = ("generic", "zero_token")
#: large-s exponents derived in the module docstring, keyed (layer, tokens)
THEORY = {
    ("attention", "generic"): 0.0,
    ("attention", "zero_token"): 2.0,
    ("ln_attention", "generic"): -1.0,
    ("ln_attention", "zero_token"): 0.0,
}
LABELS = {
    "attention": "softmax attention",
    "ln_attention": "LayerNorm, then attention",
    "generic": "Gaussian tokens",
    "zero_token": "Gaussian tokens, one at the origin (Kim et al.)",
}


@dataclass(frozen=True, kw_only=True)
class LipschitzConfig:
    """One sweep of ``||dF/dX||_2`` over the input scale.

    Attributes:
        L: tokens; d: token width (one head, d_K = d_V = d, scale 1/sqrt(d)).
        draws: independent draws of weights and tokens (seeds ``seed + r``).
        s_min, s_max, num_scales: log grid of input scales s.
        s_fit: exponents are fitted over s >= s_fit.
        eps: LayerNorm epsilon (gain 1, bias 0).
        method: "dense" (SVD of the exact Jacobian) or "lanczos" (matrix-free, jvp/vjp).
        seed: base seed.
    """

    L: int = 16
    d: int = 16
    draws: int = 8
    s_min: float = 0.1
    s_max: float = 1000.0
    num_scales: int = 17
    s_fit: float = 100.0
    eps: float = 1e-5
    method: str = "dense"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("L", 2), ("d", 1), ("draws", 1), ("num_scales", 2)):
            check_int(name, getattr(self, name), low=minimum)
        for name in ("s_min", "s_max", "s_fit", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
        if self.s_max <= self.s_min:
            raise ValueError(f"s_max must exceed s_min, got s_min={self.s_min}, s_max={self.s_max}")
        if self.method not in ("dense", "lanczos"):
            raise ValueError(f"method must be 'dense' or 'lanczos', got {self.method!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")

    def scales(self) -> np.ndarray:
        """(num_scales,) log grid from s_min to s_max."""
        return np.geomspace(self.s_min, self.s_max, self.num_scales)

    def name(self) -> str:
        return (
            f"attention_lipschitz_L={self.L}_d={self.d}_draws={self.draws}_s={self.s_min:g}-{self.s_max:g}"
            f"_{self.method}_seed={self.seed}"
        )


def layers(config: LipschitzConfig) -> dict[str, object]:
    """The two models ``f(params, X)``: one softmax head, and the same head after a LayerNorm (gain 1, bias 0)."""
    head = SelfAttention(d_model=config.d)
    eps = config.eps
    return {"attention": head, "ln_attention": lambda params, X: head(params, layer_norm(X, 1.0, 0.0, eps))}


def draw(config: LipschitzConfig, r: int, tokens: str) -> tuple[dict[str, Tensor], Tensor]:
    """Weights (``SelfAttention.init``, std 1/sqrt(d)) and unit-scale tokens (L, d) of draw r.

    Token 0 is zeroed for ``tokens="zero_token"``.
    """
    if tokens not in TOKENS:
        raise ValueError(f"tokens must be one of {TOKENS}, got {tokens!r}")
    params = SelfAttention(d_model=config.d).init(seed=config.seed + r)
    X = torch.randn(
        config.L, config.d, generator=torch.Generator().manual_seed(10_000 + config.seed + r), dtype=torch.float64
    )
    if tokens == "zero_token":
        X[0] = 0.0
    return params, X


def input_spectral_norm(model, params: dict[str, Tensor], X: Tensor, method: str = "dense") -> tuple[float, float]:
    """``(||dF/dX||_2, error bound)``: LAPACK singular values of the dense Jacobian (bound 0) or Lanczos on J^T J."""
    if method == "dense":
        return float(torch.linalg.svdvals(jacobian(model, params, X).matrix)[0]), 0.0
    if method == "lanczos":
        est = jacobian_operator(model, params, X).spectral_norm()
        return float(est.value), float(est.stderr)
    raise ValueError(f"method must be 'dense' or 'lanczos', got {method!r}")


def store(config: LipschitzConfig, path: str | Path) -> ResultStore:
    """The result store of ``config`` at ``path`` (a file of another config is a ValueError)."""
    return ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})


def draw_key(tokens: str, r: int) -> str:
    """Store key of draw ``r`` of the token family ``tokens``."""
    return f"{tokens}_draw={r:03d}"


def run(config: LipschitzConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Sweep every (tokens, draw) and save each as it finishes; finished keys are skipped (resume).

    Store keys ``{tokens}_draw={r:03d}`` hold ``norms`` and ``bounds`` (n_layers, num_scales) and ``seconds``.
    """
    if not isinstance(config, LipschitzConfig):
        raise TypeError(f"config must be a LipschitzConfig, got {type(config).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = store(config, path)
    models = layers(config)
    todo = [(t, r) for t in TOKENS for r in range(config.draws) if not results.done(draw_key(t, r))]
    for tokens, r in tqdm(todo, desc="attention Lipschitz", disable=not progress):
        t0 = time.perf_counter()
        params, X = draw(config, r, tokens)
        out = np.array(
            [
                [input_spectral_norm(models[name], params, s * X, config.method) for s in config.scales()]
                for name in LAYERS
            ]
        )
        results.save(draw_key(tokens, r), norms=out[..., 0], bounds=out[..., 1], seconds=time.perf_counter() - t0)
    return path


@dataclass(frozen=True)
class LipschitzResults:
    """A Lipschitz file in memory.

    Attributes:
        config: LipschitzConfig; scales: (S,) grid.
        norms, bounds: (n_tokens, draws, n_layers, S) in the order TOKENS x draws x LAYERS, NaN where missing.
        seconds: total compute time of the saved keys.
    """

    config: LipschitzConfig
    scales: np.ndarray
    norms: np.ndarray
    bounds: np.ndarray
    seconds: float

    def slopes(self) -> list[dict]:
        """Large-s exponents next to theory, and ``peak``, the median over draws of the largest norm on the grid.

        An exponent is the mean of the per-draw log-log slopes over s >= s_fit (``fit_line``: NaN with fewer
        than 3 scales there), with its s.e.m. over draws.
        """
        keep = self.scales >= self.config.s_fit * (1 - 1e-12)
        rows = []
        for t, tokens in enumerate(TOKENS):
            for l, name in enumerate(LAYERS):
                per_draw = [
                    fit_line(np.log(self.scales[keep]), np.log(y[keep])).slope
                    for y in self.norms[t, :, l]
                    if np.isfinite(y[keep]).all()
                ]
                n = len(per_draw)
                if n == 0:
                    slope, sem = float("nan"), float("nan")
                else:
                    slope, sem = (
                        float(np.mean(per_draw)),
                        float(np.std(per_draw, ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                    )
                with np.errstate(invalid="ignore"):
                    peak = float(np.nanmedian(np.nanmax(self.norms[t, :, l], axis=1)))
                rows.append(
                    {
                        "layer": name,
                        "tokens": tokens,
                        "slope": slope,
                        "sem": sem,
                        "draws": n,
                        "points": int(keep.sum()),
                        "theory": THEORY[(name, tokens)],
                        "peak": peak,
                    }
                )
        return rows


def load(path: str | Path) -> LipschitzResults:
    """Read a Lipschitz file (missing keys are NaN)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    config = stored_config(path, LipschitzConfig, KIND)
    results = store(config, path)
    S = config.num_scales
    norms = np.full((len(TOKENS), config.draws, len(LAYERS), S), np.nan)
    bounds = norms.copy()
    seconds = 0.0
    done = set(results.keys())
    for t, tokens in enumerate(TOKENS):
        for r in range(config.draws):
            if draw_key(tokens, r) in done:
                v = results.load(draw_key(tokens, r))
                norms[t, r], bounds[t, r] = v["norms"], v["bounds"]
                seconds += float(v["seconds"])
    return LipschitzResults(config, config.scales(), norms, bounds, seconds)


def format_slopes(rows: list[dict], *, confidence: float = 0.95) -> str:
    """One line per (tokens, layer): fitted exponent +- s.e.m., the theory exponent, and whether the theory lies
    in the exponent's interval (Student t over the draws, ``confidence``)."""
    lines = [
        f"{'tokens':<11} {'layer':<13} {'fitted exponent +- s.e.m.':>27}  theory  {'max over s (median of draws)':>28}"
        f"  comparison with theory ({confidence:.0%} interval over draws)"
    ]
    for row in rows:
        low, high = theory_interval(row, confidence=confidence)
        lines.append(
            f"{row['tokens']:<11} {row['layer']:<13} {row['slope']:>+15.4f} +- {row['sem']:.1e}  "
            f"{row['theory']:+6.0f}  {row['peak']:>28.4g}  "
            + compare_with_theory(row["theory"], low, high, confidence=confidence, tolerance=EXPONENT_TOLERANCE)[1]
        )
    return "\n".join(lines)


#: Allowance for the finite fit range s_fit <= s <= s_max of a large-s exponent (the subleading terms decay
#: like 1/s there).
EXPONENT_TOLERANCE = 0.05


def theory_interval(row: dict, *, confidence: float = 0.95) -> tuple[float, float]:
    """The ``confidence`` interval of a ``slopes`` row's exponent: Student t over its draws (NaN below 2)."""
    if row["draws"] < 2 or not np.isfinite(row["sem"]):
        return float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, row["draws"] - 1) * row["sem"])
    return row["slope"] - half, row["slope"] + half


def plot(path: str | Path, *, fig=None, ax=None, save=True) -> Figure:
    """Log-log ``||dF/dX||_2`` against s, one panel per token family: draws thin, geometric mean bold, fitted
    slope dashed.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the panels into; None for a new one.
        ax: the axes to draw on instead (one per token family).
        save: True for the PNG beside the data, False for no file, or a path.
    """
    res = load(path)
    rows = {(row["layer"], row["tokens"]): row for row in res.slopes()}
    s = res.scales
    keep = s >= res.config.s_fit * (1 - 1e-12)
    fig, axes = panels(1, len(TOKENS), size=(12, 4.6), fig=fig, ax=ax, squeeze=False, sharey=True)
    axes = axes[0]
    for ax, (t, tokens) in zip(axes, enumerate(TOKENS)):
        for l, name in enumerate(LAYERS):
            color = f"C{l}"
            y = res.norms[t, :, l]
            ax.loglog(s, y.T, color=color, lw=0.6, alpha=0.35)
            with np.errstate(invalid="ignore"):
                mean = np.exp(np.nanmean(np.log(y), axis=0))
            row = rows[(name, tokens)]
            fitted = f"slope {row['slope']:+.3f} $\\pm$ {row['sem']:.1e} (theory {row['theory']:+.0f})"
            ax.loglog(
                s,
                mean,
                "o-",
                color=color,
                ms=3,
                lw=1.8,
                label=f"{LABELS[name]}: {fitted}",
            )
            if np.isfinite(row["slope"]) and keep.sum() >= 2:
                c = np.exp(np.mean(np.log(mean[keep]) - row["slope"] * np.log(s[keep])))
                ax.loglog(s[keep], 1.6 * c * s[keep] ** row["slope"], "--", color=color, lw=1)
        ax.axvline(res.config.s_fit, color="0.6", lw=0.8, ls=":")
        ax.set_title(LABELS[tokens], fontsize=10)
        ax.set_xlabel("input scale s  (X -> s X)")
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("$\\|\\partial F / \\partial X\\|_2$")
    c = res.config
    fig.suptitle(
        f"Spectral norm of the input Jacobian, one head, L = {c.L}, d = {c.d}, {c.draws} draws ({c.method}); "
        f"slopes fitted for s >= {c.s_fit:g} (dotted line), dashed: fitted power law (offset)",
        fontsize=9,
    )
    return finish(fig, save, figure_path(path), dpi=120)


# ---------------------------------------------------------------------------------------------------------
# command line


#: Time measured on the 2-core development machine (one core's worth; README command).
TIMING = "default ~10 s"


def build_parser():
    p = study_parser(
        "attention_lipschitz",
        __doc__,
        seed=0,
        seed_help="base seed of the weights and tokens",
        threads=1,
        timing=TIMING,
        full=False,
    )
    p.add_argument("--n", type=integer(2), default=16, help="tokens L")
    p.add_argument("--d", type=integer(1), default=16, help="token width (d_K = d_V = d)")
    p.add_argument("--draws", type=integer(1), default=8, help="random draws of weights and tokens")
    p.add_argument("--s-min", type=real(above=0.0), default=0.1, help="smallest input scale s")
    p.add_argument("--s-max", type=real(above=0.0), default=1000.0, help="largest input scale s")
    p.add_argument("--num-scales", type=integer(2), default=17, help="points of the log grid of s")
    p.add_argument("--s-fit", type=real(above=0.0), default=100.0, help="fit the exponents over s >= s_fit")
    p.add_argument("--eps", type=real(above=0.0), default=1e-5, help="LayerNorm epsilon")
    p.add_argument(
        "--method", choices=("dense", "lanczos"), default="dense", help="SVD of the dense Jacobian, or Lanczos"
    )
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def config_from_args(args) -> LipschitzConfig:
    return LipschitzConfig(
        L=args.n,
        d=args.d,
        draws=args.draws,
        s_min=args.s_min,
        s_max=args.s_max,
        num_scales=args.num_scales,
        s_fit=args.s_fit,
        eps=args.eps,
        method=args.method,
        seed=args.seed,
    )


def output_paths(args):
    """The results file of the command line's config and the files drawn from it."""
    path = args.out / f"{config_from_args(args).name()}.h5"
    return path, [figure_path(path), path.with_name(path.stem + "_slopes.json")]


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    config = config_from_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = run(config, path, progress=not args.no_progress)
    res = load(path)
    plot(path)
    png = figure_path(path)
    rows = res.slopes()
    table = format_slopes(rows)
    path.with_name(path.stem + "_slopes.json").write_text(json.dumps(rows, indent=1))
    print(
        f"{config.name()}: {res.seconds:.1f} s of Jacobian computation\n"
        f"large-s exponents of ||dF/dX||_2 ~ s^p (s >= {config.s_fit:g}):\n{table}"
    )
    print(f"saved {path}, {png} and {path.stem}_slopes.json")
    return path


if __name__ == "__main__":
    main()
