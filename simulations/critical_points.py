"""Critical points of the interaction energy: which are strict saddles, how fast they are
escaped, and how that compares with the plateaus of the staircase (Geshkovski et al., 2023).

    python -m simulations.critical_points [--betas 0 1 ... 20] [--sim-betas 4 6 8 10]
        [--prepared-betas 3 4 6 8 10 12] [--out DIR]

Part 1 classifies symmetric configurations (k clusters of m tokens at a regular k-gon,
antipodal pairs, the single cluster, the uniform polygon) over a beta grid, and fits the
slope of log(ascent ratio) against beta, the ratio being the largest Hessian eigenvalue over
the largest |eigenvalue| (within-cluster stiffness); the metastability picture suggests -(1 - alpha).
Part 2 starts the dynamics in caps around the k-gon (k = 4..6, the theorem's well-prepared
starts) and fits log(duration of the k-cluster plateau) against beta: slope ~ 1 - alpha, and
duration ~ log(1 / spread) / ratio if the plateau is the escape from the k-gon saddle.
Part 3 runs the dynamics from uniform starts, finds the plateaus of its staircase, merges the
state at each plateau's midpoint into clusters, refines it by Newton to an exact critical
point and classifies both; plateau durations are compared with (1 - alpha) beta and with the
ascent ratio of the stalled state.

The defaults are the full sizes (``--full`` changes nothing). Results go to
``<out>/critical_points_<dynamics>_d<d>_n<n>_<digest>.h5`` through ``particles.io.ResultStore``
(one entry per configuration and per simulated beta, then the fits; a rerun skips finished
entries); the figure is drawn from that file, next to it.
"""

import dataclasses

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from particles import count_clusters, sample_sphere, simulate
from particles.critical_points import (
    KINDS,
    classify_critical_point,
    plateau_critical_points,
    polygon_configuration,
)
from particles.metastability import find_plateaus
from simulations.common.cli import config_or_exit, integer, real, refuse_existing, set_threads, study_parser
from simulations.common.figures import figure_path, finish, panels
from simulations.common.fits import compare_with_theory, fit_line
from simulations.common.naming import result_path
from simulations.common.store import open_study_store

STUDY = "critical_points"

# (label, k, tokens per vertex or None for --tokens-per-vertex, d)
CONFIGURATIONS = [
    ("single cluster", 1, None, 2),
    ("single cluster d=3", 1, None, 3),
    ("antipodal pair", 2, 1, 2),
    ("antipodal pair d=3", 2, 1, 3),
    ("2 clusters", 2, None, 2),
    ("3 clusters", 3, None, 2),
    ("4 clusters", 4, None, 2),
    ("5 clusters", 5, None, 2),
    ("6 clusters", 6, None, 2),
    ("3 clusters d=3", 3, None, 3),
    ("uniform 12-gon", 12, 1, 2),
]
PLATEAU_FIELDS = (
    "system",
    "start",
    "end",
    "censored",
    "clusters",
    "alpha",
    "alpha_critical",
    "displacement",
    "converged",
    "merged_gradient",
    "merged_ratio",
    "critical_kind",
    "critical_index",
    "critical_ratio",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CriticalPointsConfig:
    """The three parts of the study (see the module docstring); the fields are the flags.

    Attributes:
        betas, tokens_per_vertex, tol, fit_beta_min, ratio_floor: part 1, the classified
            configurations, their beta grid, the classification tolerance and the fitted range.
        prepared_ks, prepared_n, prepared_betas, prepared_t_max, spread, prepared_ratio_max:
            part 2, the caps around the k-gon.
        sim_betas, n, d, batch, t_max: part 3, the uniform starts.
        dt, save_every, link_tol, dynamics, seed: the runs of parts 2 and 3.
    """

    betas: tuple = tuple(float(b) for b in np.arange(0.0, 20.5, 1.0))
    tokens_per_vertex: int = 4
    tol: float = 1e-8
    fit_beta_min: float = 4.0
    ratio_floor: float = 1e-10
    prepared_ks: tuple = (4, 5, 6)
    prepared_n: int = 60
    prepared_betas: tuple = (6.0, 8.0, 10.0, 12.0, 14.0, 16.0)
    prepared_t_max: float = 2000.0
    spread: float = 0.05
    prepared_ratio_max: float = 0.2
    sim_betas: tuple = (4.0, 6.0, 8.0, 10.0)
    n: int = 32
    d: int = 2
    batch: int = 8
    t_max: float = 1000.0
    dt: float = 0.1
    save_every: int = 10
    link_tol: float = 1e-3
    dynamics: str = "SA"
    seed: int = 0

    def __post_init__(self):
        for k in self.prepared_ks:
            if k < 2 or self.prepared_n % k:
                raise ValueError(f"prepared_ks must be >= 2 and divide prepared_n = {self.prepared_n}, got {k}")

    def as_dict(self):
        out = dataclasses.asdict(self)
        for name in ("betas", "prepared_betas", "sim_betas"):
            out[name] = np.asarray(out[name], dtype=float)
        out["prepared_ks"] = np.asarray(self.prepared_ks)
        return out


def theory_alpha(k):
    """Largest inner product between two vertices of the regular k-gon (NaN for k = 1)."""
    return float(np.cos(2 * np.pi / k)) if k >= 2 else float("nan")


def scan_configuration(k, m, d, betas, tol):
    x = polygon_configuration(k, m, d)
    points = [classify_critical_point(x, beta, tol) for beta in betas]
    return dict(
        k=k,
        tokens_per_vertex=m,
        d=d,
        alpha=theory_alpha(k),
        betas=np.asarray(betas),
        kind=np.array([KINDS.index(c.kind) for c in points]),
        index=np.array([c.index for c in points]),
        orbit_dimension=np.array([c.orbit_dimension for c in points]),
        gradient_norm=np.array([c.gradient_norm for c in points]),
        top_eigenvalue=np.array([c.top_eigenvalue for c in points]),
        scale=np.array([c.scale for c in points]),
        ratio=np.array([c.ascent_ratio for c in points]),
        eigenvalues=np.stack([c.eigenvalues for c in points]),
    )


def scan_prepared(beta, config):
    """Duration of the first k-cluster plateau from caps around the k-gon, one run per k."""
    m = [config.prepared_n // k for k in config.prepared_ks]
    x0 = np.stack(
        [
            polygon_configuration(k, mk, 2, spread=config.spread, seed=config.seed + k)
            for k, mk in zip(config.prepared_ks, m)
        ]
    )
    traj = simulate(
        x0, beta=beta, t_max=config.prepared_t_max, dt=config.dt, dynamics=config.dynamics, save_every=config.save_every
    )
    ts, counts = traj.ts[1:], count_clusters(traj.xs[1:], tol=config.link_tol)
    start, end = np.full(len(m), np.nan), np.full(len(m), np.nan)
    for j, k in enumerate(config.prepared_ks):
        plateaus = [p for p in find_plateaus(ts, counts[:, j]) if p.clusters == k]
        if plateaus:
            start[j], end[j] = plateaus[0].start, plateaus[0].end
    ratio = [
        classify_critical_point(polygon_configuration(k, mk), beta, config.tol).ascent_ratio
        for k, mk in zip(config.prepared_ks, m)
    ]
    return dict(
        beta=beta,
        k=np.asarray(config.prepared_ks),
        start=start,
        end=end,
        censored=end >= ts[-1],
        ratio=np.asarray(ratio),
        alpha=np.array([theory_alpha(k) for k in config.prepared_ks]),
    )


def scan_plateaus(x0, beta, config):
    traj = simulate(
        x0, beta=beta, t_max=config.t_max, dt=config.dt, dynamics=config.dynamics, save_every=config.save_every
    )
    found = plateau_critical_points(traj.ts[1:], traj.xs[1:], beta, link_tol=config.link_tol, tol=config.tol)
    rows = [
        (
            s,
            p.start,
            p.end,
            c,
            p.clusters,
            r.alpha,
            r.alpha_critical,
            r.displacement,
            r.converged,
            r.merged.gradient_norm / r.merged.scale,
            r.merged.ascent_ratio,
            KINDS.index(r.critical.kind),
            r.critical.index,
            r.critical.ascent_ratio,
        )
        for s, p, c, r in found
    ]
    table = np.array(rows, dtype=float).reshape(len(rows), len(PLATEAU_FIELDS))
    return dict(beta=beta, **{f: table[:, j] for j, f in enumerate(PLATEAU_FIELDS)})


def _line(x, y):
    """(slope, standard error, intercept) of ``fit_line``: NaN below 3 points."""
    fit = fit_line(x, y)
    return fit.slope, fit.stderr, fit.intercept


def prefactor_fit(betas, log_ratio):
    """log ratio = a + s beta + p log beta by least squares: (s, SE of s, p, SE of p).

    The k-gon's ascent eigenvalue carries a power of beta (beta^1 for k >= 3, beta^0 for
    k = 2), which biases the plain slope by about p / beta."""
    if len(betas) < 4:
        return (float("nan"),) * 4
    A = np.column_stack([np.ones_like(betas), betas, np.log(betas)])
    coef = np.linalg.lstsq(A, log_ratio, rcond=None)[0]
    resid = log_ratio - A @ coef
    cov = np.linalg.inv(A.T @ A) * (resid @ resid) / (len(betas) - 3)
    return float(coef[1]), float(np.sqrt(cov[1, 1])), float(coef[2]), float(np.sqrt(cov[2, 2]))


def eigen_fits(configurations, config):
    """Per configuration: alpha, slope and SE of log ratio vs beta, its intercept, points
    used, then the slope, its SE, the power of beta and its SE of ``prefactor_fit``."""
    rows = []
    for e in configurations:
        use = (
            (e["betas"] >= config["fit_beta_min"])
            & (e["ratio"] > config["ratio_floor"])
            & (e["ratio"] < 1.0)
            & (e["kind"] != KINDS.index("maximum"))
        )
        b, log_ratio = e["betas"][use], np.log(e["ratio"][use])
        rows.append((e["alpha"], *_line(b, log_ratio), use.sum(), *prefactor_fit(b, log_ratio)))
    return np.array(rows)


def prepared_columns(prepared):
    """The prepared runs as arrays: beta (P,), then plateau duration, censored and ascent
    ratio (P, K), one column per k of ``prepared_ks``."""
    beta = np.array([e["beta"] for e in prepared])
    duration = np.array([np.asarray(e["end"]) - np.asarray(e["start"]) for e in prepared])
    censored = np.array([np.asarray(e["censored"], dtype=bool) for e in prepared])
    ratio = np.array([e["ratio"] for e in prepared])
    return beta, duration, censored, ratio


def prepared_fits(prepared, config):
    """Per k: alpha, slope and SE of log duration vs beta, intercept, minus the slope of log
    ratio over the same betas, mean of log(duration * ratio), points used (uncensored, ratio
    below prepared_ratio_max). Last row: log duration vs -log ratio pooled over k (slope, SE,
    intercept, then NaN, NaN, NaN, points)."""
    beta, durations, censored, ratios = prepared_columns(prepared)
    rows, pooled_x, pooled_y = [], [], []
    for j, k in enumerate(config["prepared_ks"]):
        duration, ratio = durations[:, j], ratios[:, j]
        ok = ~censored[:, j] & np.isfinite(duration) & (ratio < config["prepared_ratio_max"])
        slope, se, intercept = _line(beta[ok], np.log(duration[ok]))
        ratio_slope = -fit_line(beta[ok], np.log(ratio[ok])).slope
        product = float(np.mean(np.log(duration[ok] * ratio[ok]))) if ok.any() else np.nan
        rows.append((theory_alpha(int(k)), slope, se, intercept, ratio_slope, product, ok.sum()))
        pooled_x.append(-np.log(ratio[ok]))
        pooled_y.append(np.log(duration[ok]))
    x, y = np.concatenate(pooled_x), np.concatenate(pooled_y)
    rows.append((*_line(x, y), np.nan, np.nan, np.nan, len(x)))
    return np.array(rows)


def plateau_table(plateaus):
    """The plateaus of all simulated betas as columns (``PLATEAU_FIELDS`` and ``beta``)."""
    cols = {f: np.concatenate([e[f] for e in plateaus]) for f in PLATEAU_FIELDS}
    cols["beta"] = np.concatenate([np.full(len(e["start"]), e["beta"]) for e in plateaus])
    return cols


def plateau_fits(cols):
    """Rows: log duration vs beta, vs (1 - alpha) beta, vs -log(ratio of the stalled state),
    vs -log(ratio of the refined critical point); finished plateaus only."""
    ok = cols["censored"] == 0
    log_t = np.log(cols["end"] - cols["start"])[ok]
    beta, alpha = cols["beta"][ok], cols["alpha"][ok]
    return np.array(
        [
            (*_line(beta, log_t), float(np.mean(1 - alpha)) if ok.any() else np.nan),
            (*_line((1 - alpha) * beta, log_t), 1.0),
            (*_line(-np.log(np.abs(cols["merged_ratio"][ok])), log_t), 1.0),
            (*_line(-np.log(np.abs(cols["critical_ratio"][ok])), log_t), 1.0),
        ]
    )


def run(config, path, *, progress=True):
    """All three parts into ``path``, then the fits; a rerun skips finished entries.

    Returns:
        ``pathlib.Path`` of the file.
    """
    store, stored = open_study_store(path, STUDY, config)
    # Dense eigenproblems of size ~100: one BLAS thread is ~20x faster on a loaded machine.
    # One bar over every piece: a symmetric configuration (its whole beta grid), a prepared run or a
    # uniform-start run; pieces already in the file count as done.
    pieces = len(CONFIGURATIONS) + len(config.prepared_betas) + len(config.sim_betas)
    with threadpool_limits(1, user_api="blas"), tqdm(total=pieces, desc="critical points", disable=not progress) as bar:
        for j, (label, k, m, d) in enumerate(CONFIGURATIONS):
            if not store.done(f"config_{j:02d}"):
                m = config.tokens_per_vertex if m is None else m
                store.save(f"config_{j:02d}", label=label, **scan_configuration(k, m, d, config.betas, config.tol))
            bar.update(1)
        for i, beta in enumerate(config.prepared_betas):
            bar.set_postfix_str(f"prepared start, beta = {beta:g}")
            if not store.done(f"prepared_{i:02d}"):
                store.save(f"prepared_{i:02d}", **scan_prepared(beta, config))
            bar.update(1)
        x0 = sample_sphere(config.n, config.d, batch=config.batch, seed=config.seed)
        for i, beta in enumerate(config.sim_betas):
            bar.set_postfix_str(f"uniform start, beta = {beta:g}")
            if not store.done(f"plateaus_{i:02d}"):
                store.save(f"plateaus_{i:02d}", **scan_plateaus(x0, beta, config))
            bar.update(1)
    data = _entries(store, stored)
    store.save_observable(
        "eigen_fits",
        eigen_fits(data["configurations"], stored),
        overwrite=True,
        attrs=dict(
            columns="alpha, slope, stderr, intercept, points, slope with p log beta, its stderr, p, its stderr",
            rows="; ".join(c[0] for c in CONFIGURATIONS),
        ),
    )
    store.save_observable(
        "prepared_fits",
        prepared_fits(data["prepared"], stored),
        overwrite=True,
        attrs=dict(
            columns="alpha, slope, stderr, intercept, minus ratio slope, mean log(T ratio), points",
            rows="k = "
            + ", ".join(str(k) for k in config.prepared_ks)
            + "; last: log T vs -log ratio over all k (slope, stderr, intercept, ..., points)",
        ),
    )
    store.save_observable(
        "plateau_fits",
        plateau_fits(plateau_table(data["plateaus"])),
        overwrite=True,
        attrs=dict(
            columns="slope, stderr, intercept, reference",
            rows="log T vs beta (reference mean(1 - alpha)); log T vs (1 - alpha) beta; "
            "log T vs -log ratio of the merged state; log T vs -log ratio at the critical point",
        ),
    )
    return path


def _entries(store, config):
    return {
        "configurations": [store.load(f"config_{j:02d}") for j in range(len(CONFIGURATIONS))],
        "prepared": [store.load(f"prepared_{i:02d}") for i in range(len(config["prepared_betas"]))],
        "plateaus": [store.load(f"plateaus_{i:02d}") for i in range(len(config["sim_betas"]))],
    }


def load(path):
    """The results of a file written by ``run``.

    Returns:
        dict with ``config``; ``configurations`` (one dict per ``CONFIGURATIONS`` entry: the
        classification over ``betas``), ``prepared`` (one per prepared beta), ``plateaus``
        (one per simulated beta); the fit tables ``eigen_fits``, ``prepared_fits``,
        ``plateau_fits`` (columns in ``eigen_fits``, ``prepared_fits``, ``plateau_fits``).
    """
    store, config = open_study_store(path, STUDY)
    data = {"config": config, **_entries(store, config)}
    for name in ("eigen_fits", "prepared_fits", "plateau_fits"):
        data[name] = store.load_observable(name)[0]
    return data


def plot(path, *, fig=None, ax=None, save=True):
    """Four panels, all read from the HDF5 file and saved as PNG beside it: ascent ratio vs
    beta for the k-gon clusters; prepared plateau durations vs beta; uniform-start plateau
    durations vs (1 - alpha) beta, and vs the inverse ascent ratio of the stalled state.

    Args:
        path: the study's HDF5 file.
        fig: a ``Figure`` or ``SubFigure`` to draw the panels into; None for a new one.
        ax: the axes to draw on instead (four, row by row).
        save: True for the PNG beside the data, False for no file, or a path.

    Returns:
        the ``Figure``.
    """
    data = load(path)
    config = data["config"]
    fits, pfits, ufits = data["eigen_fits"], data["prepared_fits"], data["plateau_fits"]
    fig, axes = panels(2, 2, size=(13, 9.5), fig=fig, ax=ax)
    ax = axes[0, 0]
    for j, (label, k, m, d) in enumerate(CONFIGURATIONS):
        alpha, slope, _, intercept = fits[j][:4]
        if k < 2 or m == 1 or d != 2 or np.isnan(slope):
            continue
        e = data["configurations"][j]
        keep = e["ratio"] > 0
        (line,) = ax.semilogy(
            e["betas"][keep],
            e["ratio"][keep],
            "o",
            ms=4,
            label=f"{label}: fit {slope:.2f}, -(1 - alpha) = {alpha - 1:.2f}",
        )
        b = e["betas"][e["betas"] >= config["fit_beta_min"]]
        ax.semilogy(b, np.exp(intercept + slope * b), "-", color=line.get_color())
        ax.semilogy(b, np.exp(intercept + slope * b[-1] + (alpha - 1) * (b - b[-1])), ":", color=line.get_color())
    ax.axhline(config["tol"], color="grey", lw=0.8)
    ax.set_ylim(bottom=config["ratio_floor"] / 10)
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel("largest eigenvalue / largest |eigenvalue|")
    ax.set_title(
        f"k-gon, {config['tokens_per_vertex']} tokens per vertex: fit (solid), theory slope (dotted), tol (grey)",
        fontsize=9,
    )
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    beta, durations, censoreds, ratios = prepared_columns(data["prepared"])
    for j, k in enumerate(config["prepared_ks"]):
        alpha, slope, se, intercept, _, product, _ = pfits[j]
        duration, censored, ratio = durations[:, j], censoreds[:, j], ratios[:, j]
        (line,) = ax.semilogy(
            beta[~censored],
            duration[~censored],
            "o",
            label=f"k = {k}: slope {slope:.2f} +- {se:.2f}, 1 - alpha = {1 - alpha:.2f}",
        )
        ax.semilogy(beta[censored], duration[censored], "^", mfc="none", color=line.get_color())
        if not np.isnan(slope):
            ax.semilogy(beta, np.exp(intercept + slope * beta), "-", color=line.get_color())
            ax.semilogy(beta, np.exp(product) / ratio, ":", color=line.get_color())
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel(f"duration of the k-cluster plateau ({config['dynamics']} time)")
    ax.set_title(
        f"caps of radius {config['spread']:g} around the k-gon, n = {config['prepared_n']}: "
        f"fit (solid), C / ascent ratio (dotted), censored (open)\n"
        f"log T vs -log ratio, all k: slope {pfits[-1][0]:.2f} +- {pfits[-1][1]:.2f}",
        fontsize=9,
    )
    ax.legend(fontsize=7)

    cols = plateau_table(data["plateaus"])
    ok = cols["censored"] == 0
    duration = cols["end"] - cols["start"]
    ax = axes[1, 0]
    x = (1 - cols["alpha"]) * cols["beta"]
    sc = ax.scatter(x[ok], duration[ok], c=cols["beta"][ok], s=14, cmap="plasma")
    ax.scatter(x[~ok], duration[~ok], marker="^", facecolors="none", edgecolors="grey", s=18, label="censored at t_max")
    fig.colorbar(sc, ax=ax, label=r"$\beta$")
    slope, se, intercept, _ = ufits[1]
    if not np.isnan(slope):
        grid = np.linspace(x[ok].min(), x[ok].max(), 20)
        ax.plot(grid, np.exp(intercept + slope * grid), "k-", label=f"fit slope {slope:.2f} +- {se:.2f}")
        mid = grid.mean()
        ax.plot(grid, np.exp(intercept + slope * mid + (grid - mid)), "k:", label="slope 1")
    ax.set_yscale("log")
    ax.set_xlabel(r"$(1 - \alpha)\,\beta$, alpha at the plateau midpoint")
    ax.set_ylabel("plateau duration (>= 2 clusters)")
    ax.set_title(
        f"uniform starts, n = {config['n']}, d = {config['d']}; log T vs beta alone: "
        f"slope {ufits[0][0]:.2f} +- {ufits[0][1]:.2f} (alpha varies)",
        fontsize=9,
    )
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    inv = 1 / np.abs(cols["merged_ratio"])
    sc = ax.scatter(inv[ok], duration[ok], c=cols["beta"][ok], s=14, cmap="plasma")
    fig.colorbar(sc, ax=ax, label=r"$\beta$")
    if ok.any():
        lims = [min(inv[ok].min(), duration[ok].min()), max(inv[ok].max(), duration[ok].max())]
        ax.plot(lims, lims, "k:", label="duration = 1 / ratio")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("1 / ascent ratio of the merged midpoint state")
    ax.set_ylabel("plateau duration")
    ax.set_title(f"uniform starts: log-log slope {ufits[2][0]:.2f} +- {ufits[2][1]:.2f}", fontsize=9)
    ax.legend(fontsize=7)
    return finish(fig, save, figure_path(path))


def print_tables(data):
    """The classification at a few betas and the three fit tables."""
    config, fits, pfits, ufits = data["config"], data["eigen_fits"], data["prepared_fits"], data["plateau_fits"]
    betas = config["betas"]
    shown = [b for b in (1.0, 4.0, 10.0) if b in betas] or list(betas[:3])
    print(
        f"\n{'configuration':20s} {'n':>3s} {'orbit':>5s} "
        + " ".join(f"{'beta=' + format(b, 'g'):>27s}" for b in shown)
    )
    for j, (label, k, _, _) in enumerate(CONFIGURATIONS):
        e = data["configurations"][j]
        cells = []
        for b in shown:
            i = int(np.argmin(np.abs(e["betas"] - b)))
            cells.append(f"{KINDS[e['kind'][i]]} i={e['index'][i]} r={e['ratio'][i]:.1e}")
        n = k * e["tokens_per_vertex"]
        print(f"{label:20s} {n:3d} {e['orbit_dimension'][-1]:5d} " + " ".join(f"{c:>27s}" for c in cells))
    print(
        f"\n{'log ascent ratio vs beta':24s} {'alpha':>6s} {'slope':>8s} {'+-SE':>6s} "
        f"{'-(1-alpha)':>10s} {'points':>6s} {'slope|+p log b':>14s} {'+-SE':>6s} {'p':>6s} {'+-SE':>6s}  "
        f"slope vs -(1-alpha), {WALD}"
    )
    for (label, _, _, _), row in zip(CONFIGURATIONS, fits):
        alpha, slope, se, _, npts, s2, se2, power, se_p = row
        if not np.isnan(slope):
            print(
                f"{label:24s} {alpha:6.2f} {slope:8.3f} {se:6.3f} {alpha - 1:10.2f} {int(npts):6d} "
                f"{s2:14.3f} {se2:6.3f} {power:6.2f} {se_p:6.2f}  {_versus(alpha - 1, slope, se)}"
            )
    print(
        f"\n{'prepared caps':14s} {'alpha':>6s} {'log T slope':>11s} {'+-SE':>6s} "
        f"{'-ratio slope':>12s} {'1-alpha':>7s} {'<log T*ratio>':>13s} {'points':>6s}  "
        f"log T slope vs its lower bound 1-alpha, {WALD}"
    )
    for k, (alpha, slope, se, _, ratio_slope, product, npts) in zip(config["prepared_ks"], pfits):
        print(
            f"{'k = ' + str(k):14s} {alpha:6.2f} {slope:11.3f} {se:6.3f} {ratio_slope:12.3f} "
            f"{1 - alpha:7.2f} {product:13.2f} {int(npts):6d}  {_at_least(1 - alpha, slope, se)}"
        )
    slope, se, _, _, _, _, npts = pfits[-1]
    print(
        f"prepared caps, all k: log T vs -log ratio slope {slope:.3f} +- {se:.3f} (reference 1, {int(npts)} points): "
        + _versus(1.0, slope, se)
    )
    names = [
        "log T vs beta",
        "log T vs (1-alpha) beta",
        "log T vs -log ratio (stalled)",
        "log T vs -log ratio (critical)",
    ]
    print(f"\n{'uniform starts':32s} {'slope':>7s} {'+-SE':>6s} {'reference':>9s}  slope vs reference, {WALD}")
    for name, (slope, se, _, ref) in zip(names, ufits):
        print(f"{name:32s} {slope:7.3f} {se:6.3f} {ref:9.3f}  {_versus(ref, slope, se)}")


#: How the printed comparisons turn a slope and its standard error into an interval.
WALD = "95% interval slope +- 1.96 SE"


def _versus(theory, slope, se):
    """Whether ``theory`` lies in the 95% interval slope +- 1.96 se (normal approximation), in words."""
    return compare_with_theory(theory, slope - 1.96 * se, slope + 1.96 * se)[1]


def _at_least(bound, slope, se):
    """Whether the slope is compatible with the theory's lower bound: its 95% interval reaches it."""
    low, high = slope - 1.96 * se, slope + 1.96 * se
    interval = f"95% interval [{low:.3g}, {high:.3g}]"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"undetermined: no finite {interval}"
    if high >= bound:
        return f"agrees: the {interval} reaches the lower bound {bound:.3g}"
    return f"disagrees: the {interval} lies below the lower bound {bound:.3g}"


#: Time measured on the 2-core development machine (one core's worth; README command).
TIMING = "default ~10 s"


def build_parser():
    p = study_parser("critical_points", __doc__, seed=0, seed_help="seed of the starts", timing=TIMING, full=False)
    p.add_argument(
        "--betas", type=real(0.0), nargs="+", default=list(np.arange(0.0, 20.5, 1.0)), help="part 1: beta grid"
    )
    p.add_argument("--tokens-per-vertex", type=integer(1), default=4, help="part 1: tokens per cluster")
    p.add_argument("--tol", type=real(above=0.0), default=1e-8, help="relative classification tolerance")
    p.add_argument("--fit-beta-min", type=real(0.0), default=4.0, help="part 1: fit over beta >= this")
    p.add_argument(
        "--ratio-floor",
        type=real(above=0.0),
        default=1e-10,
        help="smallest ascent ratio fitted (rounding is ~1e-15)",
    )
    p.add_argument("--prepared-ks", type=integer(2), nargs="+", default=[4, 5, 6], help="part 2: clusters k")
    p.add_argument("--prepared-n", type=integer(1), default=60, help="part 2: tokens of the prepared starts")
    p.add_argument(
        "--prepared-betas",
        type=real(0.0),
        nargs="+",
        default=[6.0, 8.0, 10.0, 12.0, 14.0, 16.0],
        help="part 2: betas",
    )
    p.add_argument("--prepared-t-max", type=real(above=0.0), default=2000.0, help="part 2: end time")
    p.add_argument("--spread", type=real(above=0.0), default=0.05, help="part 2: cap radius of prepared starts")
    p.add_argument(
        "--prepared-ratio-max",
        type=real(above=0.0),
        default=0.2,
        help="prepared runs with a larger ascent ratio are not fitted (the escape "
        "is not slow against the collapse into the caps)",
    )
    p.add_argument("--sim-betas", type=real(0.0), nargs="+", default=[4.0, 6.0, 8.0, 10.0], help="part 3: betas")
    p.add_argument("--n", type=integer(2), default=32, help="part 3: tokens")
    p.add_argument("--d", type=integer(2), default=2, help="part 3: dimension")
    p.add_argument("--batch", type=integer(1), default=8, help="part 3: uniform starts per beta")
    p.add_argument("--t-max", type=real(above=0.0), default=1000.0, help="part 3: end time")
    p.add_argument("--dt", type=real(above=0.0), default=0.1, help="Euler step of parts 2 and 3")
    p.add_argument("--save-every", type=integer(1), default=10, help="steps between saved frames")
    p.add_argument("--link-tol", type=real(above=0.0), default=1e-3, help="cluster linkage tolerance")
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA", help="softmax (SA) or unnormalised (USA)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def make_config(args):
    """The study's config from the command line."""
    fields = [f.name for f in dataclasses.fields(CriticalPointsConfig)]
    values = {name: getattr(args, name) for name in fields}
    for name in ("betas", "prepared_betas", "sim_betas"):
        values[name] = tuple(float(b) for b in values[name])
    values["prepared_ks"] = tuple(int(k) for k in values["prepared_ks"])
    return CriticalPointsConfig(**values)


def output_paths(args):
    """The results file of the command line's config and the files drawn from it."""
    config = make_config(args)
    path = result_path(args.out, f"critical_points_{config.dynamics}_d{config.d}_n{config.n}", config)
    return path, [figure_path(path)]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path, outputs = config_or_exit(parser, lambda: output_paths(args))
    refuse_existing(parser, args, outputs)
    run(make_config(args), path, progress=not args.no_progress)
    plot(path)
    print_tables(load(path))
    print(f"\nsaved {path} and {figure_path(path)}")
    return path


if __name__ == "__main__":
    main()
