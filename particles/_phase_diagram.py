"""The (t, beta) phase diagram of clustering (Geshkovski et al., 2023, section 2 of the
theory note): many systems per beta, the authors' Euler scheme, clustering statistics at
checkpoints in time. The computation only; the study (result file, resuming, Dask, figure)
is ``simulations.phase_diagram``."""

import dataclasses
import math
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from . import _observable_kernels, _sweep_kernels, cuda, ensembles
from ._fields import FusedField
from ._params import DYNAMICS, SimulationParams
from ._simulate import _field, _raise_non_finite, run
from ._step_check import check_step, lipschitz_bound
from ._threads import check_threads, thread_limit
from .checks import check_choice, check_int, check_real

__all__ = ["ClusteringEnsemble", "PhaseDiagram", "phase_diagram", "beta_statistics", "beta_generator"]

DRAWS = ("system", "beta", "run")
# First word of the spawn keys: a beta's own stream or the one shared by all betas
# (draw="run"). Keys have a fixed length, since SeedSequence ignores trailing zero words.
_BETA_STREAM, _RUN_STREAM = 0, 1
# Stored with a sweep's settings (see ClusteringEnsemble.as_dict).
_DRAW_KEY = "seed and float64 bits of beta"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusteringEnsemble:
    """The systems simulated at each beta of a phase diagram and the statistics kept of
    them (defaults: the authors' SA defaults).

    Attributes:
        n, d, batch: tokens, dimension, systems per beta.
        t_max, dt: final time and Euler step.
        checkpoints: number of checkpoint times, linspace(0, t_max, checkpoints); each is
            recorded at the first step that reaches it, as in the authors' code.
        dynamics: "SA" or "USA".
        interaction, value: the ensembles of ``particles.ensembles.draw`` for B = Q^T K and V.
        draw: one draw of (B, V) per "system", per "beta" (shared by its systems) or per
            "run" (shared by all betas).
        regen_period: re-draw (B, V) every this much time (mimics distinct layers), or None.
        usa_step_correction: the authors' USA step dt / max(sqrt(beta) e^{beta - 1/2}, 1).
        seed: the seed of the whole sweep; each beta draws from ``beta_generator(seed,
            beta)``, keyed by the value of beta, so that any subset of betas, in any order
            or on any worker, gives the same numbers.
        density_threshold: pairs with <x_i, x_j> above it count as close (authors: 0.999).
        cluster_tol: single-linkage tolerance of the cluster count (authors: 1e-4).
    """

    n: int = 32
    d: int = 2
    batch: int = 2048
    t_max: float = 30.0
    dt: float = 0.1
    checkpoints: int = 200
    dynamics: str = "SA"
    interaction: str = "identity"
    value: str = "identity"
    draw: str = "system"
    regen_period: Optional[float] = None
    usa_step_correction: bool = False
    seed: int = 0
    density_threshold: float = 0.999
    cluster_tol: float = 1e-4

    DRAWS = DRAWS

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("n", check_int("n", self.n, low=2))
        set_("d", check_int("d", self.d, low=2))
        set_("batch", check_int("batch", self.batch, low=1))
        set_("t_max", check_real("t_max", self.t_max, low=0.0, low_inclusive=False))
        set_("dt", check_real("dt", self.dt, low=0.0, low_inclusive=False))
        set_("checkpoints", check_int("checkpoints", self.checkpoints, low=2))
        check_choice("dynamics", self.dynamics, DYNAMICS)
        check_choice("interaction", self.interaction, ensembles.INTERACTIONS)
        check_choice("value", self.value, ensembles.VALUES)
        check_choice("draw", self.draw, DRAWS)
        if self.regen_period is not None:
            set_("regen_period", check_real("regen_period", self.regen_period, low=0.0, low_inclusive=False))
        set_("seed", check_int("seed", self.seed, low=0))
        set_("density_threshold", check_real("density_threshold", self.density_threshold))
        set_("cluster_tol", check_real("cluster_tol", self.cluster_tol, low=0.0, low_inclusive=False))

    def step_size(self, beta):
        if self.usa_step_correction and self.dynamics == "USA":
            return self.dt / max(math.sqrt(beta) * math.exp(beta - 0.5), 1.0)
        return self.dt

    def num_steps(self, beta):
        """Time steps of one run at ``beta`` (the last checkpoint's step)."""
        return int(np.ceil(self.t_max / self.step_size(beta) - 1e-9))

    def checkpoint_steps(self, beta):
        """The step reached at each checkpoint of a run at ``beta``."""
        return np.ceil(self.checkpoint_times() / self.step_size(beta) - 1e-9).astype(np.int64)

    def checkpoint_times(self):
        return np.linspace(0.0, self.t_max, self.checkpoints)

    @staticmethod
    def check_betas(betas):
        """``betas`` as a tuple of floats; ValueError unless a non-empty 1-D list of finite
        values >= 0."""
        array = np.atleast_1d(np.asarray(betas, dtype=np.float64))
        if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)) or array.min() < 0:
            raise ValueError(f"betas must be a non-empty 1-D list of finite values >= 0, got {betas!r}")
        return tuple(float(b) for b in array)

    def as_dict(self):
        """Flat dict of scalars and strings (for HDF5 attributes); ``draw_key`` names how
        the draws are keyed: files written when draws were keyed by the position k of beta
        in the list hold other numbers, and ``ResultStore`` refuses them instead of mixing
        the two."""
        out = dataclasses.asdict(self)
        out["regen_period"] = -1.0 if self.regen_period is None else self.regen_period
        out["draw_key"] = _DRAW_KEY
        return out

    @classmethod
    def from_dict(cls, values):
        """The ensemble of an ``as_dict`` (extra keys, such as a sweep's betas, ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in fields}
        if kwargs.get("regen_period") == -1.0:
            kwargs["regen_period"] = None
        return cls(**kwargs)

    def check_steps(self, betas):
        """One ``StepSizeWarning`` for a sweep over ``betas``, at the beta whose Euler step
        lies furthest past the stability limit (with its first draw of B and V), or none."""

        def step_times_bound(beta):
            drawn = _draws(self, beta)[1]()
            return self.step_size(beta) * lipschitz_bound(beta, drawn.A, drawn.V, self.dynamics)

        if betas:
            beta = max(betas, key=step_times_bound)
            drawn = _draws(self, beta)[1]()
            check_step(
                beta, self.step_size(beta), A=drawn.A, V=drawn.V, dynamics=self.dynamics, method="euler", stacklevel=4
            )


def beta_generator(seed, beta):
    """The random stream of one beta in a sweep with this seed.

    Keyed by the exact float64 bits of beta (-0.0 counts as 0.0), not by its position in
    the list of betas: a beta gets the same starts and matrices in every sweep.
    """
    bits = int(np.array(float(beta) + 0.0, dtype=np.float64).view(np.uint64))
    key = (_BETA_STREAM, bits & 0xFFFFFFFF, bits >> 32)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclasses.dataclass(frozen=True)
class PhaseDiagram:
    """Result of a sweep.

    Attributes:
        ensemble: the ``ClusteringEnsemble`` of every beta.
        betas: (K,) inverse temperatures.
        ts: (C,) checkpoint times.
        density: (K, C) fraction of close ordered pairs, pooled over systems.
        clusters: (K, C) median number of clusters over systems.
        final_density: (K, batch) density of each system at the last checkpoint.
    """

    ensemble: ClusteringEnsemble
    betas: np.ndarray
    ts: np.ndarray
    density: np.ndarray
    clusters: np.ndarray
    final_density: np.ndarray

    @classmethod
    def from_rows(cls, ensemble, betas, rows):
        """The diagram of the ``beta_statistics`` rows of ``betas``, in their order."""
        stack = lambda name: np.stack([row[name] for row in rows])  # noqa: E731
        return cls(
            ensemble=ensemble,
            betas=np.asarray(betas, dtype=np.float64),
            ts=ensemble.checkpoint_times(),
            density=stack("density"),
            clusters=stack("clusters"),
            final_density=stack("final_density"),
        )


def beta_statistics(beta, ensemble, *, threads=None, device="cpu", on_steps=None):
    """Simulate the systems of ``ensemble`` at ``beta`` and return their statistics at the
    checkpoints. The numbers depend on the value of beta and the ensemble's seed only (see
    ``beta_generator``), so any subset of betas, in any order or on any worker, agrees.

    Args:
        beta: inverse temperature, >= 0.
        ensemble: a ``ClusteringEnsemble``.
        threads: threads to run on, at most ``NUMBA_NUM_THREADS``; None: the cores this
            process may run on (its CPU affinity), and torch (d > 8) as it is set. The
            numbers do not depend on it.
        device: "cpu", "cuda" (one thread block per system, statistics on the GPU) or
            "auto" (see ``phase_diagram``).
        on_steps: if given, ``on_steps(k)`` is called for each checkpoint with the k time
            steps taken since the previous one (``ensemble.num_steps(beta)`` in all): a
            progress bar in steps. The fused sweep (one launch per beta) reports them all
            when its launch ends.

    Returns:
        dict with "density" (C,), "clusters" (C,) and "final_density" (batch,).
    """
    beta = float(beta)
    if cuda.resolve_device(device) == "cuda":
        row = cuda.clustering_statistics([beta], ensemble, lambda b: _draws(ensemble, b))[0]
        _report_steps(on_steps, ensemble.checkpoint_steps(beta))
        return row
    torch_threads = threads
    threads = check_threads(threads)
    x0, draw_matrices = _draws(ensemble, beta)
    h = ensemble.step_size(beta)
    checkpoint_steps = ensemble.checkpoint_steps(beta)
    redraw = None
    if ensemble.regen_period is not None:
        every = max(1, round(ensemble.regen_period / h))
        redraw = (np.arange(every, checkpoint_steps[-1] + 1, every), draw_matrices)
    drawn = draw_matrices()
    # Q = None: the field's A = Q^T K is the drawn K itself, with no product formed.
    params = SimulationParams(
        beta=beta, t_max=checkpoint_steps[-1] * h, dt=h, dynamics=ensemble.dynamics, K=drawn.K, V=drawn.V
    )
    pairs = ensemble.n * (ensemble.n - 1)

    def summary(close, counts):
        return close.sum() / (ensemble.batch * pairs), np.median(counts)

    with thread_limit(threads, torch_threads):
        field = _field(x0, params, in_span=False)
        if redraw is None and _fits_fused_sweep(field, params):
            close, counts = _fused_sweep(field, x0, params, checkpoint_steps, ensemble, threads)
            stats = [summary(close[c], counts[c]) for c in range(len(checkpoint_steps))]
            close = close[-1]
            _report_steps(on_steps, checkpoint_steps)
        else:
            close, stats = _stepwise_sweep(x0, params, checkpoint_steps, redraw, ensemble, summary, on_steps)
    density, clusters = np.array(stats).T
    return {"density": density, "clusters": clusters, "final_density": close / pairs}


def _report_steps(on_steps, checkpoint_steps):
    if on_steps is not None:
        for steps in np.diff(checkpoint_steps, prepend=0):
            on_steps(int(steps))


def _stepwise_sweep(x0, params, checkpoint_steps, redraw, ensemble, summary, on_steps):
    """The sweep through ``run``: a parallel pass per step and per checkpoint. Returns the
    close pairs of each system at the last checkpoint, (batch,), and the ``summary`` of
    each checkpoint."""
    close = np.empty(ensemble.batch, np.int64)
    counts = np.empty(ensemble.batch, np.int64)
    labels = np.empty((ensemble.batch, ensemble.n), np.int64)
    rows, stacks = _observable_kernels.scratch(ensemble.batch, ensemble.n)

    reached = iter(np.diff(checkpoint_steps, prepend=0))

    def statistics(x):
        _observable_kernels.pair_statistics(
            x, ensemble.density_threshold, 1.0 - ensemble.cluster_tol, rows, stacks, close, labels, counts
        )
        if on_steps is not None:
            on_steps(int(next(reached)))
        return summary(close, counts)

    saved = run(x0, params, in_span=False, save_steps=checkpoint_steps, fn=statistics, redraw=redraw)
    return close, [stats for _, stats in saved]


def _fits_fused_sweep(field, params):
    """Whether ``_fused_sweep`` runs this field: a fused field (d <= 8) that runs whole
    systems per task, on a grid of equal steps."""
    _, last_step = params.step_grid()
    return isinstance(field, FusedField) and field.fused_euler and last_step == params.dt


def _fused_sweep(field, x0, params, checkpoint_steps, ensemble, threads):
    """All steps and checkpoint statistics in one parallel launch (``_sweep_kernels``).
    Returns the close ordered pairs and the clusters, each (checkpoints, batch) int64."""
    x = field.pack(x0)
    B, n = x.shape[0], x.shape[2]
    C = len(checkpoint_steps)
    stretches = np.diff(checkpoint_steps, prepend=0).astype(np.int64)
    workers = max(1, min(threads, B))
    close = np.zeros((C, B), np.int64)
    counts = np.zeros((C, B), np.int64)
    completed = np.empty(B, np.int64)
    thresholds = (ensemble.density_threshold, 1.0 - ensemble.cluster_tol)
    # Scratch of the statistics, one row per worker.
    statistics = (np.empty((workers, 4 * n)), np.empty((workers, n), np.int64), np.empty((workers, n), np.int64))
    outputs = (np.zeros(1, np.int64), close, counts, completed)
    if field.symmetric:
        _sweep_kernels.euler_statistics_symmetric(
            x,
            field.BA,
            field.V,
            field.shift,
            field.usa,
            params.dt,
            stretches,
            *thresholds,
            np.empty((workers, 12, 2 * n), x.dtype),
            *statistics,
            *outputs,
        )
    else:
        kernel = _sweep_kernels.euler_statistics2 if field.dp == 2 else _sweep_kernels.euler_statistics4
        kernel(
            x,
            field.BA,
            field.V,
            field.shift,
            field.usa,
            field.row_max,
            params.dt,
            stretches,
            *thresholds,
            field.chunk,
            field.ax,
            field.vx,
            field.v,
            field.norms,
            field.work[:workers],
            *statistics,
            *outputs,
        )
    first_failure = int(completed.min())
    if first_failure < checkpoint_steps[-1]:
        step_times, _ = params.step_grid()
        _raise_non_finite(params, step_times[first_failure + 1], first_failure + 1)
    return close, counts


def _draws(ensemble, beta):
    """The starts of beta's systems and a function drawing their next ``DrawnMatrices``, in
    the order of the draws of ``beta_statistics``."""
    rng = beta_generator(ensemble.seed, beta)
    run_rng = np.random.default_rng(np.random.SeedSequence(ensemble.seed, spawn_key=(_RUN_STREAM, 0, 0)))
    x0 = rng.standard_normal((ensemble.batch, ensemble.n, ensemble.d))
    x0 /= np.linalg.norm(x0, axis=-1, keepdims=True)
    draw_rng = run_rng if ensemble.draw == "run" else rng
    size = ensemble.batch if ensemble.draw == "system" else None
    return x0, lambda: ensembles.draw(ensemble.interaction, ensemble.value, ensemble.d, draw_rng, size=size)


def phase_diagram(betas, *, progress=False, threads=None, device="cpu", **settings):
    """The (t, beta) phase diagram of clustering, computed here and kept in memory.

    Args:
        betas: inverse temperatures, >= 0.
        progress: show a progress bar counting the time steps of all betas.
        threads: threads to run on, at most ``NUMBA_NUM_THREADS``; None: the cores this
            process may run on (its CPU affinity), and torch (d > 8) as it is set. The
            numbers do not depend on it.
        device: "cpu"; "cuda": every system of every beta is one GPU thread block running
            all its steps, the checkpoint statistics computed on the GPU (float64, the same
            scheme and draws: the numbers agree with the CPU's up to rounding); "auto": the
            GPU where there is one.
        **settings: the fields of ``ClusteringEnsemble`` (n, d, batch, t_max, dt,
            checkpoints, dynamics, interaction, value, draw, regen_period,
            usa_step_correction, seed, density_threshold, cluster_tol).

    Returns:
        ``PhaseDiagram``. A sweep stored in a file, resumable and on a Dask cluster, is
        ``python -m simulations.phase_diagram``.

    Warns:
        StepSizeWarning: once, at the beta whose Euler step is worst, if any is unstable.
    """
    betas = ClusteringEnsemble.check_betas(betas)
    check_threads(threads)
    ensemble = ClusteringEnsemble(**settings)
    ensemble.check_steps(betas)
    if cuda.resolve_device(device) == "cuda":
        rows = cuda.clustering_statistics(betas, ensemble, lambda beta: _draws(ensemble, beta))
    else:
        total = sum(ensemble.num_steps(beta) for beta in betas)
        with tqdm(total=total, disable=not progress, unit="step", unit_scale=True, desc="phase diagram") as bar:
            rows = [beta_statistics(beta, ensemble, threads=threads, on_steps=bar.update) for beta in betas]
    return PhaseDiagram.from_rows(ensemble, betas, rows)
