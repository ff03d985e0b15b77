"""``solve``: the mean-field limit of self-attention on the circle."""

import dataclasses

import numpy as np
from tqdm.auto import tqdm

from .. import io
from ..checks import as_float_array, check_choice, check_finite, check_int, check_real
from .grid import check_density, check_resolution, grid
from .kernel import FaceVelocity, Interaction
from .scheme import DEFAULT_CFL, SSPRK3

DYNAMICS = ("SA", "USA")


@dataclasses.dataclass(frozen=True)
class MeanFieldSolution:
    """A density trajectory on the uniform grid.

    Attributes:
        ts: (T,) save times, from 0 to t_max. theta: (M,) cell centres 2 pi k / M.
        rho: (T, M) cell averages, each row a density (sum * 2 pi / M = 1).
        steps: (T,) solver steps taken up to each frame.
        beta, dynamics: the run's parameters.
    """

    ts: np.ndarray
    theta: np.ndarray
    rho: np.ndarray
    steps: np.ndarray
    beta: float
    dynamics: str


def solve(
    rho0,
    *,
    beta,
    t_max,
    dynamics="SA",
    Q=None,
    K=None,
    V=None,
    ts=None,
    frames=101,
    cfl=DEFAULT_CFL,
    store=None,
    overwrite=False,
    progress=False,
):
    r"""Solve the continuity equation of self-attention on the circle (Geshkovski et al., 2023).

    The density rho(theta, t) of tokens x = (cos theta, sin theta) follows

    $$\partial_t \rho + \partial_\theta(\rho\, u[\rho]) = 0, \qquad
      u[\rho](\theta) = \frac{\int e^{\beta\langle Qx, Ky\rangle} \langle e_\theta, Vy\rangle \rho(\phi)\,d\phi}
                             {Z[\rho](\theta)},$$

    with e_theta = (-sin theta, cos theta), Z = integral of e^{beta <Qx, Ky>} rho dphi (SA) or
    Z = 1 (USA); the n-particle system of ``particles.simulate`` is its empirical version.

    Scheme: finite volumes on M cells, the convolutions by FFT (``kernel``), MUSCL with the
    van Leer limiter and upwind fluxes (second order where rho is smooth, first order at its
    extrema), SSP-RK3 in time with the adaptive CFL-limited step of ``scheme``. Mass is
    conserved to rounding and rho stays non-negative.

    Main arguments:
        rho0: (M,) float64 density of cell averages on theta_k = 2 pi k / M, non-negative,
            sum(rho0) * 2 pi / M = 1; M at least ``minimum_grid(beta q k)``.
        beta: inverse temperature, >= 0.
        t_max: final time, >= 0; the last frame is exactly at t_max.
        dynamics: "SA" or "USA".

    Other arguments:
        Q, K, V: None (identity) or (2, 2) scalar multiples of rotations (others do not
            commute with rotations, and the kernel would not be a convolution).
        ts: save times in [0, t_max] (0 and t_max are added); default ``frames`` equally
            spaced times.
        frames: number of equally spaced frames when ``ts`` is None, >= 2.
        cfl: Courant number in (0, 0.5].
        store: path of an HDF5 file written as the run goes (``particles.io.density``); an
            existing file of the same run resumes from its last frame.
        overwrite: replace an existing ``store`` instead of resuming.
        progress: show a progress bar over the frames.

    Returns:
        ``MeanFieldSolution`` with ``ts`` (T,), ``theta`` (M,), ``rho`` (T, M).

    Raises:
        TypeError, ValueError: bad input, naming the argument (a grid too coarse for beta
            names the minimum).
        RuntimeError: the density became non-finite (USA at large beta overflows).

    Example:
        >>> import numpy as np
        >>> from particles.mean_field import grid, solve
        >>> theta = grid(64)
        >>> rho0 = (1 + 0.1 * np.cos(theta)) / (2 * np.pi)
        >>> sol = solve(rho0, beta=1.0, t_max=2.0, frames=3)
        >>> sol.rho.shape, sol.ts.tolist()
        ((3, 64), [0.0, 1.0, 2.0])
        >>> bool(abs(sol.rho[-1].sum() * 2 * np.pi / 64 - 1) < 1e-12)
        True
    """
    rho0 = check_density("rho0", rho0)
    M = rho0.shape[0]
    t_max = check_real("t_max", t_max, low=0.0)
    dynamics = check_choice("dynamics", dynamics, DYNAMICS)
    cfl = check_real("cfl", cfl, low=0.0, low_inclusive=False, high=0.5)
    interaction = Interaction.from_matrices(beta, Q, K, V, dynamics)
    check_resolution(M, abs(interaction.beta))
    save_times = _save_times(ts, frames, t_max)
    theta = grid(M)
    stepper = SSPRK3(FaceVelocity(interaction, M), M, cfl)
    params = {
        "beta": float(beta),
        "t_max": t_max,
        "dynamics": dynamics,
        "cfl": cfl,
        "rho0": rho0,
        "save_times": save_times,
        **{
            name: (None if m is None else np.asarray(m, dtype=np.float64)) for name, m in (("Q", Q), ("K", K), ("V", V))
        },
    }
    frames_out = []
    writer = io.DensityWriter(store, theta, params, overwrite=overwrite) if store is not None else None
    try:
        if writer is not None and writer.frames:
            t, rho, stepper.steps = writer.last
            first = writer.frames
        else:
            t, rho, first = 0.0, rho0, 1
            frames_out.append((0.0, rho0, 0))
            if writer is not None:
                writer.append(0.0, rho0, 0)
        bar = tqdm(total=len(save_times) - first, disable=not progress, desc="mean field")
        for t_save in save_times[first:]:
            rho = stepper.advance(rho, t, t_save)
            t = t_save
            if writer is not None:
                writer.append(t, rho, stepper.steps)
            else:
                frames_out.append((t, rho, stepper.steps))
            bar.update()
        bar.close()
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        stored = io.read_density(store)
        return MeanFieldSolution(stored.ts, stored.theta, stored.rho, stored.steps, float(beta), dynamics)
    return MeanFieldSolution(
        ts=np.array([f[0] for f in frames_out]),
        theta=theta,
        rho=np.stack([f[1] for f in frames_out]),
        steps=np.array([f[2] for f in frames_out], dtype=np.int64),
        beta=float(beta),
        dynamics=dynamics,
    )


def load_solution(path):
    """The ``MeanFieldSolution`` stored by ``solve(..., store=path)``."""
    stored = io.read_density(path)
    return MeanFieldSolution(
        stored.ts, stored.theta, stored.rho, stored.steps, float(stored.params["beta"]), stored.params["dynamics"]
    )


def _save_times(ts, frames, t_max):
    if ts is None:
        frames = check_int("frames", frames, low=2)
        return np.linspace(0.0, t_max, frames)
    ts = as_float_array("ts", ts)
    if ts.ndim != 1:
        raise ValueError(f"ts must be a 1-D array of save times, got shape {ts.shape}")
    check_finite("ts", ts)
    if ts.size and (ts.min() < 0 or ts.max() > t_max or np.any(np.diff(ts) <= 0)):
        raise ValueError(f"ts must be increasing times in [0, t_max = {t_max:g}], got {ts.tolist()[:8]}")
    out = ts.astype(np.float64)
    if not out.size or out[0] > 0:
        out = np.concatenate([[0.0], out])
    if out[-1] < t_max:
        out = np.concatenate([out, [t_max]])
    return out
