"""The (t, beta) phase diagram of clustering (Geshkovski et al., 2023, section 2 of the
theory note): many systems per beta, the authors' Euler scheme, clustering statistics at
checkpoints in time."""

import dataclasses
import math
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from . import _observable_kernels, ensembles
from ._checks import check_choice, check_int, check_real
from ._params import DYNAMICS, SimulationParams
from ._simulate import run
from ._step_check import check_step, lipschitz_bound

__all__ = [
    "PhaseDiagramConfig",
    "PhaseDiagram",
    "phase_diagram",
    "run_phase_diagram",
    "load_phase_diagram",
    "beta_statistics",
    "beta_generator",
]

DRAWS = ("system", "beta", "run")
# First word of the spawn keys: a beta's own stream or the one shared by all betas
# (draw="run"). Keys have a fixed length, since SeedSequence ignores trailing zero words.
_BETA_STREAM, _RUN_STREAM = 0, 1
# Stored with the config: files written when draws were keyed by the position k of beta in
# the list hold other numbers, and ResultStore refuses them instead of mixing the two.
_DRAW_KEY = "seed and float64 bits of beta"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PhaseDiagramConfig:
    """Everything that defines a phase-diagram sweep (defaults: the authors' SA defaults).

    Attributes:
        betas: inverse temperatures, >= 0.
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

    betas: tuple
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
        betas = np.atleast_1d(np.asarray(self.betas, dtype=np.float64))
        if betas.ndim != 1 or betas.size == 0 or not np.all(np.isfinite(betas)) or betas.min() < 0:
            raise ValueError(f"betas must be a non-empty 1-D list of finite values >= 0, got {self.betas!r}")
        set_("betas", tuple(float(b) for b in betas))
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

    def checkpoint_times(self):
        return np.linspace(0.0, self.t_max, self.checkpoints)

    def as_dict(self):
        """Flat dict of scalars, strings and arrays (for HDF5 attributes)."""
        out = dataclasses.asdict(self)
        out["betas"] = np.asarray(self.betas)
        out["regen_period"] = -1.0 if self.regen_period is None else self.regen_period
        out["draw_key"] = _DRAW_KEY
        return out


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
        config: the ``PhaseDiagramConfig``.
        betas: (K,) inverse temperatures.
        ts: (C,) checkpoint times.
        density: (K, C) fraction of close ordered pairs, pooled over systems.
        clusters: (K, C) median number of clusters over systems.
        final_density: (K, batch) density of each system at the last checkpoint.
    """

    config: PhaseDiagramConfig
    betas: np.ndarray
    ts: np.ndarray
    density: np.ndarray
    clusters: np.ndarray
    final_density: np.ndarray


def beta_statistics(config, k):
    """Simulate the systems of beta number k and return their statistics at the checkpoints.

    The numbers depend on the value of ``config.betas[k]``, not on k (see ``beta_generator``).

    Returns:
        dict with "density" (C,), "clusters" (C,) and "final_density" (batch,).
    """
    beta = config.betas[k]
    x0, draw_matrices = _draws(config, beta)
    h = config.step_size(beta)
    checkpoint_steps = np.ceil(config.checkpoint_times() / h - 1e-9).astype(np.int64)
    redraw = None
    if config.regen_period is not None:
        every = max(1, round(config.regen_period / h))
        redraw = (np.arange(every, checkpoint_steps[-1] + 1, every), draw_matrices)
    A, V = draw_matrices()
    # Q = I, K = A: the field's A is the drawn matrix itself.
    params = SimulationParams(beta=beta, t_max=checkpoint_steps[-1] * h, dt=h, dynamics=config.dynamics, K=A, V=V)
    pairs = config.n * (config.n - 1)
    close = np.empty(config.batch, np.int64)
    counts = np.empty(config.batch, np.int64)
    labels = np.empty((config.batch, config.n), np.int64)
    rows, stacks = _observable_kernels.scratch(config.batch, config.n)

    def statistics(x):
        _observable_kernels.pair_statistics(
            x, config.density_threshold, 1.0 - config.cluster_tol, rows, stacks, close, labels, counts
        )
        return close.sum() / (config.batch * pairs), np.median(counts)

    saved = run(x0, params, in_span=False, save_steps=checkpoint_steps, fn=statistics, redraw=redraw)
    density, clusters = np.array([stats for _, stats in saved]).T
    return {"density": density, "clusters": clusters, "final_density": close / pairs}


def _draws(config, beta):
    """The starts of beta's systems and a function drawing their next (B, V), in the order
    of the draws of ``beta_statistics``."""
    rng = beta_generator(config.seed, beta)
    run_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_RUN_STREAM, 0, 0)))
    x0 = rng.standard_normal((config.batch, config.n, config.d))
    x0 /= np.linalg.norm(x0, axis=-1, keepdims=True)
    draw_rng = run_rng if config.draw == "run" else rng
    size = config.batch if config.draw == "system" else None
    return x0, lambda: ensembles.draw(config.interaction, config.value, config.d, draw_rng, size=size)


def _check_steps(config, betas):
    """One ``StepSizeWarning`` for the sweep, at the beta whose Euler step lies furthest past
    the stability limit (with its first draw of B and V), or none."""

    def step_times_bound(beta):
        A, V = _draws(config, beta)[1]()
        return config.step_size(beta) * lipschitz_bound(beta, A, V, config.dynamics)

    if betas:
        beta = max(betas, key=step_times_bound)
        A, V = _draws(config, beta)[1]()
        check_step(beta, config.step_size(beta), A=A, V=V, dynamics=config.dynamics, method="euler", stacklevel=3)


def phase_diagram(
    betas,
    *,
    n=32,
    d=2,
    batch=2048,
    t_max=30.0,
    dt=0.1,
    checkpoints=200,
    dynamics="SA",
    interaction="identity",
    value="identity",
    draw="system",
    regen_period=None,
    usa_step_correction=False,
    seed=0,
    store=None,
    scheduler=None,
    progress=False,
):
    """The (t, beta) phase diagram of clustering.

    Arguments are the fields of ``PhaseDiagramConfig``; ``store``, ``scheduler`` and
    ``progress`` are those of ``run_phase_diagram``.

    Returns:
        ``PhaseDiagram``.
    """
    config = PhaseDiagramConfig(
        betas=betas,
        n=n,
        d=d,
        batch=batch,
        t_max=t_max,
        dt=dt,
        checkpoints=checkpoints,
        dynamics=dynamics,
        interaction=interaction,
        value=value,
        draw=draw,
        regen_period=regen_period,
        usa_step_correction=usa_step_correction,
        seed=seed,
    )
    return run_phase_diagram(config, store=store, scheduler=scheduler, progress=progress)


def run_phase_diagram(config, *, store=None, scheduler=None, progress=False):
    """Run the sweep defined by a ``PhaseDiagramConfig``.

    Args:
        config: the sweep.
        store: HDF5 path; each finished beta is saved there at once, and a rerun with the
            same configuration skips the betas already stored.
        scheduler: None (this machine's cores), a Dask ``distributed.Client`` or the address
            of a Dask scheduler ("tcp://host:port"); one task per beta, identical results.
        progress: show a progress bar over betas.

    Returns:
        ``PhaseDiagram``.
    """
    results = {}
    sink = None
    if store is not None:
        from .io import ResultStore

        sink = ResultStore(store, config=config.as_dict())
        results = {k: sink.load(_key(k)) for k in range(len(config.betas)) if sink.done(_key(k))}
    todo = [k for k in range(len(config.betas)) if k not in results]
    _check_steps(config, [config.betas[k] for k in todo])
    bar = tqdm(total=len(config.betas), initial=len(results), disable=not progress, desc="phase diagram", unit="beta")
    with bar:
        for k, stats in _compute(config, todo, scheduler):
            results[k] = stats
            if sink is not None:
                sink.save(_key(k), **stats)
            bar.update(1)
    return _assemble(config, results)


def _assemble(config, results):
    stack = lambda name: np.stack([results[k][name] for k in range(len(config.betas))])  # noqa: E731
    return PhaseDiagram(
        config=config,
        betas=np.asarray(config.betas),
        ts=config.checkpoint_times(),
        density=stack("density"),
        clusters=stack("clusters"),
        final_density=stack("final_density"),
    )


def load_phase_diagram(path, config):
    """Read a finished sweep back from its HDF5 store.

    Args:
        path: the ``store`` of ``run_phase_diagram``.
        config: its ``PhaseDiagramConfig`` (checked against the one stored).

    Raises:
        ValueError: the file holds another sweep, or not all betas are finished.
    """
    from .io import ResultStore

    store = ResultStore(path, config=config.as_dict())
    missing = [k for k in range(len(config.betas)) if not store.done(_key(k))]
    if missing:
        raise ValueError(
            f"{path} holds {len(config.betas) - len(missing)} of "
            f"{len(config.betas)} betas; rerun the sweep to finish it"
        )
    return _assemble(config, {k: store.load(_key(k)) for k in range(len(config.betas))})


def _key(k):
    return f"beta_{k:04d}"


def _compute(config, todo, scheduler):
    """Yield (k, statistics) as betas finish, here or on a Dask cluster."""
    if scheduler is None:
        for k in todo:
            yield k, beta_statistics(config, k)
        return
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = {client.submit(beta_statistics, config, k, pure=False): k for k in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        if client is not scheduler:
            client.close()
