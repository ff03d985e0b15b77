"""Curvature of the attention layer along its own particle flow: Q/K curvature collapses as tokens cluster.

Simulates self-attention dynamics (or reads a stored run), computes at every frame the exact Hessian of the
flow's layer F = A(X) X V^T with respect to (Q, K, V) (``hessian.along_trajectory``), stores it (in the
simulated run's HDF5 file; for a stored run ``--from``, in a file of its own under ``--out``, or in the run's
file with ``--in-place``), then draws from that file, next to it:

* against log t: cluster count, eigenvalues of Sigma_xx = X^T X / n, and the Frobenius norms of the Q, K, V
  blocks of H, H_o and H_f (median over systems, band: min-max);
* block norms against lambda_2(Sigma_xx), the largest non-leading eigenvalue, with the fitted power law and
  the exponents derived below (``CLUSTER_EXPONENTS``); the fits go to ``*_slopes.txt``.

    python -m simulations.curvature_flow                         # n 32, d 8, 16 systems, SA, beta 1
    python -m simulations.curvature_flow --loss energy
    python -m simulations.curvature_flow --from run.h5 --every 5  # a stored run (particles.simulate(store=))

Outputs: results/curvature_flow/<name>.h5 (run + observables ``curvature.<loss>.*``), <name>_<loss>.png,
<name>_<loss>_slopes.txt; for ``--from run.h5``: results/curvature_flow/run_curvature.h5 (the curvature
alone, one entry per loss), run_curvature_<loss>.png and run_curvature_<loss>_slopes.txt.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

import particles
from hessian import KINDS
from hessian.flow import LOSSES, FlowCurvature, along_trajectory, read_curvature
from particles.io import ResultStore
from simulations.common.cli import config_or_exit, integer, real, refuse_existing, set_threads, study_parser
from simulations.common.figures import finish, panels
from simulations.common.fits import compare_with_theory, fit_line
from simulations.common.naming import result_path

#: Exponent p of ``block norm ~ lambda_2(Sigma_xx)^p`` as one cluster tightens (spread e, lambda_2 ~ e^2):
#: M2 ~ e^2, M3 ~ e^3 (moments of the attention weights), so H_o(Q/K, Q/K) ~ M2^2, H_o(Q/K, V) ~ M2,
#: H_f(Q/K, Q/K) ~ M3 except the T-functional term of H_f(Q, K) ~ M2 u; the V block keeps a finite limit.
#: For a generic residual direction.
CLUSTER_EXPONENTS = {
    "H_o": {("Q", "Q"): 2.0, ("K", "K"): 2.0, ("Q", "K"): 2.0, ("Q", "V"): 1.0, ("K", "V"): 1.0, ("V", "V"): 0.0},
    "H_f": {("Q", "Q"): 1.5, ("K", "K"): 1.5, ("Q", "K"): 1.0, ("Q", "V"): 1.0, ("K", "V"): 1.0},
    "H": {("Q", "Q"): 1.5, ("K", "K"): 1.5, ("Q", "K"): 1.0, ("Q", "V"): 1.0, ("K", "V"): 1.0, ("V", "V"): 0.0},
}

#: Allowance for the finite fit range (1e-26 < lambda_2 < 1e-4) of an asymptotic exponent: the target loss
#: meets the exponents within it (tests/simulations/test_curvature_flow.py).
EXPONENT_TOLERANCE = 0.05


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """The simulated run whose curvature is computed (``particles.simulate``); system s starts from seed + s."""

    n: int = 32
    d: int = 8
    systems: int = 16
    beta: float = 1.0
    dynamics: str = "SA"
    t_max: float = 30.0
    dt: float = 0.1
    method: str = "euler"
    seed: int = 0

    def name(self) -> str:
        """Readable head of the file name (the digest of every field follows it)."""
        return f"{self.dynamics}_n{self.n}_d{self.d}_beta{self.beta:g}"


@dataclass(frozen=True, kw_only=True)
class FlowConfig:
    """The study: a simulated run and the curvature computed along it.

    Attributes:
        simulation: the run.
        loss: "target", "next" or "energy" (``hessian.flow``).
        every: use every k-th frame.
        dense: also store the dense H and H_o.
    """

    simulation: SimulationConfig = SimulationConfig()
    loss: str = "target"
    every: int = 1
    dense: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")


def run_path(simulation: SimulationConfig, out: str | Path) -> Path:
    """``out / <name>_<digest>.h5``: the file of a simulated run, named by its config."""
    return result_path(out, simulation.name(), asdict(simulation))


def simulate(simulation: SimulationConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Simulate the run into ``path`` unless the file holds it complete (an interrupted one resumes)."""
    path = Path(path)
    if path.exists() and particles.io.info(path)["complete"]:
        return path
    s = simulation
    x0 = np.stack([particles.sample_sphere(s.n, s.d, seed=s.seed + k) for k in range(s.systems)])
    particles.simulate(
        x0,
        beta=s.beta,
        t_max=s.t_max,
        dt=s.dt,
        dynamics=s.dynamics,
        method=s.method,
        # System k starts from seed + k: the first seed identifies them all.
        store=particles.io.RunFile(path, resume=path.exists(), seed=s.seed),
        progress=progress,
    )
    return path


def analyse(
    path: str | Path,
    *,
    loss: str = "target",
    every: int = 1,
    dense: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """The curvature along a stored run, written into its file, unless stored already (``overwrite``: redo)."""
    stored = f"curvature.{loss}.norms" in particles.io.info(path)["observables"]
    if overwrite or not stored:
        along_trajectory(path, loss=loss, every=every, dense=dense, overwrite=stored, progress=progress)
    return Path(path)


def run(config: FlowConfig, path: str | Path, *, progress: bool = True) -> Path:
    """Simulate the run into ``path`` and compute its curvature there; a rerun resumes or reuses both."""
    if not isinstance(config, FlowConfig):
        raise TypeError(f"config must be a FlowConfig, got {type(config).__name__}")
    simulate(config.simulation, path, progress=progress)
    return analyse(path, loss=config.loss, every=config.every, dense=config.dense, progress=progress)


#: ``kind`` of a curvature file of its own (``particles.io.ResultStore``, one entry per loss).
CURVATURE_KIND = "curvature_flow"
_ARRAYS = ("ts", "frames", "norms", "trace", "top_eigenvalue", "H", "H_o", "sigma_eigenvalues", "cluster_count")


def curvature_path(source: str | Path, out: str | Path) -> Path:
    """``out / <source stem>_curvature.h5``: the file of the curvature along a stored run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{Path(source).stem}_curvature.h5"


def analyse_into(
    source: str | Path,
    path: str | Path,
    *,
    loss: str = "target",
    every: int = 1,
    dense: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """The curvature along the stored run ``source``, written to the file ``path`` of its own (the run's
    file is only read); a loss already in ``path`` is kept unless ``overwrite``."""
    source = Path(source).resolve()
    store = ResultStore(path, {"kind": CURVATURE_KIND, "source": str(source)})
    if store.done(loss):
        if not overwrite:
            return Path(path)
        store.delete(loss)
    curv = along_trajectory(source, loss=loss, every=every, dense=dense, write=False, progress=progress)
    arrays = {name: getattr(curv, name) for name in _ARRAYS if getattr(curv, name) is not None}
    store.save(loss, **arrays, **{f"settings.{k}": v for k, v in curv.settings.items()})
    return Path(path)


def load(path: str | Path, loss: str = "target") -> FlowCurvature:
    """The curvature of ``loss`` stored in a run file (``hessian.read_curvature``) or in a curvature file
    of its own (``analyse_into``)."""
    try:
        store = ResultStore(path)
    except particles.io.StoreError:
        return read_curvature(path, loss)
    if store.config.get("kind") != CURVATURE_KIND:
        raise ValueError(f"{path} is neither a run nor a curvature file (kind={store.config.get('kind')!r})")
    values = store.load(loss)
    settings = {k.removeprefix("settings."): v for k, v in values.items() if k.startswith("settings.")}
    return FlowCurvature(**{name: values.get(name) for name in _ARRAYS}, loss=loss, settings=settings)


def cluster_power_law(
    curv: FlowCurvature,
    *,
    lam_max: float = 1e-4,
    lam_min: float = 1e-26,
    confidence: float = 0.95,
    tolerance: float = EXPONENT_TOLERANCE,
) -> list[dict]:
    """Least-squares slopes of log(block norm) against log(lambda_2(Sigma_xx)) near one cluster.

    Points: every (frame, system) with one cluster and ``lam_min < lambda_2 < lam_max`` (below ~1e-26 the
    norms reach the rounding of the token differences). The slope is fitted on the points pooled over
    systems; its interval comes from the spread of the slopes fitted system by system (Student t over the
    systems with >= 3 points): the frames of one system are far from independent, the systems are. The
    exponents are limits as lambda_2 -> 0, so a slope agrees with one when it lies in that interval widened
    by ``tolerance`` on each side.

    Returns:
        One dict per (kind, row, col) of ``CLUSTER_EXPONENTS``: kind, block ("QK"...), slope (NaN below 3
        points), ci (low, high; NaN below 2 fitted systems), systems (fitted), theory, points, agrees
        (True, False or None) and verdict (the comparison with theory in words).
    """
    lam2 = _per_system(curv.sigma_eigenvalues[..., 1])
    one = _per_system(curv.cluster_count) == 1
    rows = []
    for kind, table in CLUSTER_EXPONENTS.items():
        for (r, c), theory in table.items():
            norm = _per_system(curv.block_norm(kind, r, c))
            ok = one & (lam2 > lam_min) & (lam2 < lam_max) & (norm > 0)
            fit = fit_line(np.log(lam2[ok]), np.log(norm[ok]))
            per_system = [
                fit_line(np.log(lam2[ok[:, k], k]), np.log(norm[ok[:, k], k])).slope for k in range(ok.shape[1])
            ]
            per_system = np.array([p for p in per_system if np.isfinite(p)])
            if per_system.size >= 2:
                half = stats.t.ppf(0.5 + confidence / 2, per_system.size - 1) * per_system.std(ddof=1)
                half /= np.sqrt(per_system.size)
                ci = (fit.slope - half, fit.slope + half)
            else:
                ci = (np.nan, np.nan)
            agrees, verdict = compare_with_theory(theory, *ci, confidence=confidence, tolerance=tolerance)
            rows.append(
                dict(
                    kind=kind,
                    block=r + c,
                    slope=fit.slope,
                    ci=ci,
                    systems=int(per_system.size),
                    theory=theory,
                    points=int(ok.sum()),
                    agrees=agrees,
                    verdict=verdict,
                )
            )
    return rows


def _per_system(a) -> np.ndarray:
    """(frames,) or (frames, systems) -> (frames, systems)."""
    return np.atleast_2d(np.asarray(a).T).T


def format_slopes(curv: FlowCurvature, rows: list[dict]) -> str:
    """The slope table of ``cluster_power_law``, each slope compared with the note's exponent, and the median
    block norms at a dozen log-spaced frames."""
    s = curv.settings
    lines = [
        f"loss {curv.loss} ({s['loss_definition']}); {s['dynamics']}, beta = {s['beta']:g}, n = {s['n']}, "
        f"d = {s['d']}, {s['systems']} systems, {len(curv.frames)} frames",
        "block norm ~ lambda_2(Sigma_xx)^p at one cluster (fit over 1e-26 < lambda_2 < 1e-4, pooled systems;",
        f"interval: 95%, from the spread of the per-system slopes, +- {EXPONENT_TOLERANCE:g} for the finite range; "
        "theory: the note's exponent for a generic loss):",
        f"{'kind':5s} {'block':5s} {'fitted p':>9s} {'95% interval':>17s} {'theory':>7s} {'points':>7s}  comparison",
    ]
    for r in rows:
        interval = f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
        word = {True: "agrees", False: "DISAGREES", None: "undetermined"}[r["agrees"]]
        lines.append(
            f"{r['kind']:5s} {r['block']:5s} {r['slope']:9.3f} {interval:>17s} {r['theory']:7.2f} "
            f"{r['points']:7d}  {word}"
        )
    off = [r for r in rows if r["agrees"] is False]
    if off:
        lines.append(
            f"{len(off)} of {len(rows)} slopes disagree with the note's exponents: "
            + "; ".join(f"{r['kind']}({r['block']}) {r['verdict'].split(': ', 1)[1]}" for r in off)
        )
    else:
        lines.append("every determined slope agrees with the note's exponent within its interval")
    counts = np.atleast_2d(curv.cluster_count.T).T
    med = lambda kind, b: np.median(np.atleast_2d(curv.block_norm(kind, b).T).T, axis=1)  # noqa: E731
    lines.append("\nmedian over systems:  t, clusters, |H_o(Q,Q)|, |H_o(K,K)|, |H_o(V,V)|, |H(Q,Q)|, lambda_2")
    lam2 = np.median(np.atleast_2d(curv.sigma_eigenvalues[..., 1].T).T, axis=1)
    columns = [med("H_o", "Q"), med("H_o", "K"), med("H_o", "V"), med("H", "Q"), lam2]
    for k in np.unique(np.geomspace(1, len(curv.ts) - 1, 12).astype(int)):
        lines.append(
            f"  t = {curv.ts[k]:7.2f}  {np.median(counts[k]):5.1f}  " + "  ".join(f"{c[k]:.3e}" for c in columns)
        )
    return "\n".join(lines) + "\n"


def _beside(path: str | Path, suffix: str) -> Path:
    path = Path(path)
    return path.with_name(path.stem + suffix)


def plot(path: str | Path, loss: str = "target", *, fig=None, ax=None, save=True) -> Figure:
    """The figure of the curvature of ``loss`` stored in the run file.

    With Q = K the Q and K blocks have equal norms: K is drawn dashed over a wider Q line, and the label
    says so, so that neither hides the other.

    Args:
        path: the run file holding the curvature (``analyse``).
        loss: which stored curvature.
        fig: a ``Figure`` or ``SubFigure`` to draw the 2 x 3 panels into; None for a new one.
        ax: six axes to draw on instead (row by row).
        save: True for ``<stem>_<loss>.png`` beside the run, False for no file, or a path.

    Returns:
        the ``Figure``.
    """
    curv = load(path, loss)
    rows = cluster_power_law(curv)
    keep = curv.ts > 0  # log t
    t = curv.ts[keep]

    def per_system(a):  # (F, [B,] ...) -> (F, B, ...)
        a = np.asarray(a)[keep]
        return a if curv.norms.ndim == 5 else a[:, None]

    fig, axes = panels(2, 3, size=(14, 8), fig=fig, ax=ax)
    ax = axes[0, 0]
    counts = per_system(curv.cluster_count)
    ax.plot(t, np.median(counts, axis=1), "k-", label="median")
    ax.fill_between(t, counts.min(axis=1), counts.max(axis=1), color="0.8", label="min-max over systems")
    ax.set(xscale="log", xlabel="t", ylabel="clusters (<x_i, x_j> > 1 - 1e-3)", title="cluster count")
    ax.legend()
    ax = axes[0, 1]
    lam = per_system(curv.sigma_eigenvalues)
    for k in range(lam.shape[-1]):
        ax.plot(t, np.median(lam[..., k], axis=1), label=f"lambda_{k + 1}" if k < 3 else None)
    ax.set(xscale="log", yscale="log", xlabel="t", ylabel="eigenvalue", title="Sigma_xx = X^T X / n (median)")
    ax.legend(fontsize=8)
    colors = {"Q": "tab:blue", "K": "tab:orange", "V": "tab:green"}
    styles = {"Q": dict(lw=3.0, ls="-", alpha=0.6), "K": dict(lw=1.2, ls="--"), "V": dict(lw=1.5, ls="-")}
    for j, kind in enumerate(KINDS):
        ax = axes[0, 2] if j == 0 else axes[1, j - 1]
        same_qk = np.allclose(curv.block_norm(kind, "Q"), curv.block_norm(kind, "K"), rtol=1e-9, atol=0)
        for b in "QKV":
            norm = per_system(curv.block_norm(kind, b))
            if not np.any(norm > 0):
                continue
            label = f"{kind}({b},{b})" + (" = (Q,Q) here" if b == "K" and same_qk else "")
            ax.plot(t, np.median(norm, axis=1), color=colors[b], label=label, **styles[b])
            ax.fill_between(t, norm.min(axis=1), norm.max(axis=1), color=colors[b], alpha=0.15, lw=0)
        ax.set(
            xscale="log", yscale="log", xlabel="t", ylabel="Frobenius norm", title=f"{kind} blocks, loss {curv.loss}"
        )
        ax.set_ylim(bottom=max(1e-40, ax.get_ylim()[0]))
        ax.legend(fontsize=8)
    ax = axes[1, 2]
    lam2 = np.asarray(curv.sigma_eigenvalues[..., 1]).reshape(-1)
    one = np.asarray(curv.cluster_count).reshape(-1) == 1
    fits = {(r["kind"], r["block"]): r for r in rows}
    marks = (  # drawn in this order: the H_o(Q,Q) and H_o(K,K) clouds, often identical, on top
        ("H_o", "V", dict(marker="d", ms=3, color=colors["V"], alpha=0.5)),
        ("H_f", "Q", dict(marker="s", ms=3, color="tab:red", alpha=0.5)),
        ("H_o", "Q", dict(marker="o", ms=5, color=colors["Q"], alpha=0.5)),
        ("H_o", "K", dict(marker="^", ms=3, mfc="none", color=colors["K"], alpha=0.6)),
    )
    for kind, b, style in marks:
        norm = np.asarray(curv.block_norm(kind, b)).reshape(-1)
        ok = one & (lam2 > 1e-26) & (norm > 0)
        row = fits[(kind, b + b)]
        word = {True: "agrees", False: "disagrees", None: "?"}[row["agrees"]]
        ax.loglog(
            lam2[ok],
            norm[ok],
            ls="none",
            label=f"{kind}({b},{b}): p = {row['slope']:.2f} [{row['ci'][0]:.2f}, {row['ci'][1]:.2f}], "
            f"theory {row['theory']:g} ({word})",
            **style,
        )
        if ok.sum() >= 3 and row["theory"] > 0:
            x = np.geomspace(lam2[ok].min(), lam2[ok].max(), 10)
            c = np.median(norm[ok] / lam2[ok] ** row["theory"])
            ax.loglog(x, c * x ** row["theory"], "k--", lw=0.8)
    ax.plot([], [], "k--", lw=0.8, label="slope of the theory")
    ax.set(
        xlabel="lambda_2(Sigma_xx) (largest non-leading)",
        ylabel="block norm",
        title="one cluster: norm ~ lambda_2^p",
    )
    ax.legend(fontsize=7)
    fig.suptitle(
        f"curvature along the flow: {curv.settings['dynamics']}, beta = {curv.settings['beta']:g}, "
        f"n = {curv.settings['n']}, d = {curv.settings['d']}, {curv.settings['systems']} systems, "
        f"loss {curv.loss}"
    )
    return finish(fig, save, _beside(path, f"_{loss}.png"), dpi=90)


# ---------------------------------------------------------------------------------------------------------
# command line


#: Time measured on the 2-core development machine (one core's worth; README commands).
TIMING = "default ~20 s, --loss energy ~25 s, --from a 16-system run --every 5 ~7 s"


def build_parser() -> argparse.ArgumentParser:
    p = study_parser(
        "curvature_flow",
        __doc__,
        seed=0,
        seed_help="seed of the initial tokens (system s uses seed + s)",
        timing=TIMING,
        full=False,
    )
    p.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        help="stored run to analyse instead of simulating (default: simulate); its file is only read",
    )
    p.add_argument(
        "--in-place",
        action="store_true",
        help="with --from: add the curvature to the stored run's file and draw beside it",
    )
    p.add_argument("--n", type=integer(2), default=32, help="tokens")
    p.add_argument("--d", type=integer(1), default=8, help="dimension")
    p.add_argument("--batch", type=integer(1), default=16, help="systems")
    p.add_argument("--beta", type=real(0.0), default=1.0, help="inverse temperature")
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA", help="softmax (SA) or unnormalised (USA)")
    p.add_argument("--t-max", type=real(above=0.0), default=30.0, help="end time")
    p.add_argument("--dt", type=real(above=0.0), default=0.1, help="time step")
    p.add_argument("--method", choices=("euler", "rk4"), default="euler", help="integrator")
    p.add_argument("--loss", choices=LOSSES, default="target", help="loss of the layer's output (hessian.flow)")
    p.add_argument("--every", type=integer(1), default=1, help="use every k-th frame")
    p.add_argument("--dense", action="store_true", help="also store the dense H and H_o")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> FlowConfig:
    simulation = SimulationConfig(
        n=args.n,
        d=args.d,
        systems=args.batch,
        beta=args.beta,
        dynamics=args.dynamics,
        t_max=args.t_max,
        dt=args.dt,
        method=args.method,
        seed=args.seed,
    )
    return FlowConfig(simulation=simulation, loss=args.loss, every=args.every, dense=args.dense)


def output_paths(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """The file the curvature goes to and the files drawn from it."""
    if args.source is None:
        path = run_path(config_from_args(args).simulation, args.out)
    elif args.in_place:
        path = args.source
    else:
        path = curvature_path(args.source, args.out)
    return path, [_beside(path, f"_{args.loss}.png"), _beside(path, f"_{args.loss}_slopes.txt")]


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.in_place and args.source is None:
        parser.error("argument --in-place: needs --from")
    if args.source is not None and not args.source.is_file():
        parser.error(f"argument --from: must be a stored run file, got {str(args.source)!r}")
    config = config_or_exit(parser, lambda: config_from_args(args))
    path, outputs = output_paths(args)
    refuse_existing(parser, args, outputs)
    progress = not args.no_progress
    options = dict(loss=args.loss, every=args.every, dense=args.dense, overwrite=args.overwrite, progress=progress)
    if args.source is None:
        simulate(config.simulation, path, progress=progress)
        analyse(path, **options)
    elif args.in_place:
        analyse(path, **options)
    else:
        analyse_into(args.source, path, **options)
    plot(path, args.loss)
    curv = load(path, args.loss)
    table = format_slopes(curv, cluster_power_law(curv))
    slopes = _beside(path, f"_{args.loss}_slopes.txt")
    slopes.write_text(table)
    print(table)
    print(f"saved {path}, {_beside(path, f'_{args.loss}.png')} and {slopes.name}")
    return path


if __name__ == "__main__":
    main()
