"""``simulate``: validate, allocate, run the time loop, save frames."""

import numpy as np
from tqdm.auto import tqdm

from . import cuda, io
from ._field_base import matmul
from ._fields import make_field
from ._params import SimulationParams
from ._step_check import check_step
from ._steppers import RK4, Dopri5, Euler
from ._threads import check_threads, thread_limit
from ._trajectory import Trajectory
from .checks import as_float_array, check_finite

# |x_i| must be 1 within these tolerances (a float32 normalisation is good to ~1e-7).
UNIT_NORM_TOL = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-5}
# Runs with fewer frames than this never show a progress bar.
_PROGRESS_MIN_FRAMES = 2


def simulate(
    x0,
    *,
    beta,
    t_max,
    dt,
    dynamics="SA",
    Q=None,
    K=None,
    V=None,
    method="euler",
    save_every=1,
    store=None,
    progress=False,
    rtol=1e-6,
    atol=1e-9,
    threads=None,
    device="cpu",
):
    r"""Simulate self-attention dynamics on the sphere (Geshkovski et al., 2023).

    Tokens x_1..x_n on S^{d-1} move by

    $$\dot x_i = P_{x_i}\Big(\frac{1}{Z_i}\sum_j e^{\beta\langle Qx_i, Kx_j\rangle} V x_j\Big),
      \qquad P_x = I - xx^\top,$$

    with Z_i = sum_k e^{beta <Q x_i, K x_k>} (SA) or Z_i = n (USA).

    Main arguments:
        x0: (n, d) or (batch, n, d) float64/float32 array of unit rows (|x_i| = 1 within
            1e-8 in float64, 1e-5 in float32). Its dtype is the precision of the run.
        beta: inverse temperature, >= 0.
        t_max: final time, >= 0.
        dt: time step. When t_max / dt is within 1e-9 of an integer N, N equal steps are
            taken; otherwise the last step is shortened to end exactly at t_max. For
            "dopri5", dt is the spacing of the output grid and the largest step.

    Other arguments:
        dynamics: "SA" or "USA".
        Q, K, V: None (identity), a (d, d) matrix shared by all systems, or (batch, d, d),
            one per system.
        method: "euler" (the authors' scheme x_i <- (x_i + dt v_i) / |x_i + dt v_i| with
            the unprojected v_i; order 1), "rk4" (projected field, renormalised; order 4)
            or "dopri5" (adaptive 5(4) with rtol/atol, one step size per batch).
        save_every: save a frame every this many steps (and always the last one).
        store: write the frames to an HDF5 file as they are computed: a
            ``particles.io.RunFile`` (path, storage dtype, compression, flush interval,
            seed, resume or overwrite), or a path, short for ``RunFile(path)``. A resumed
            "euler" or "rk4" run is bit for bit the uninterrupted one.
        progress: show a progress bar.
        rtol, atol: tolerances of "dopri5".
        threads: threads to run on, at most ``NUMBA_NUM_THREADS``; None: the cores this
            process may run on (its CPU affinity), and torch (d > 8) as it is set. The
            result does not depend on it.
        device: "cpu", "cuda" (Numba CUDA kernels; "euler" and "rk4"; the state stays on
            the GPU and only saved frames are copied back) or "auto" (the GPU where there
            is one).

    Returns:
        ``Trajectory`` with ``ts`` (m,), including 0 and t_max, ``xs`` (m, [batch,] n, d)
        and ``params``; for "dopri5" also ``n_accepted`` and ``n_rejected``, its step
        counts. With ``store``, ``xs`` is read lazily from the file, in the storage dtype.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
        RuntimeError: device="cuda" where no CUDA device is available; or the state
            became non-finite (for instance USA at large beta, whose
            weights e^{beta <x_i, x_j>} overflow), or dopri5's step collapsed; the message
            gives the dynamics, beta, dtype, time and step, and what may help.

    Warns:
        StepSizeWarning: "euler" or "rk4" with dt too large to follow the ODE (see
            ``particles.check_step``); the run goes ahead unchanged.

    Example:
        >>> from particles import sample_sphere, simulate
        >>> x0 = sample_sphere(32, 3, seed=0)
        >>> traj = simulate(x0, beta=4.0, t_max=20.0, dt=0.01)
        >>> traj.xs.shape
        (2001, 32, 3)
    """
    x0 = as_float_array("x0", x0)
    if x0.ndim not in (2, 3):
        raise ValueError(f"x0 must have shape (n, d) or (batch, n, d), got shape {x0.shape}")
    batched = x0.ndim == 3
    if x0.shape[-2] < 1:
        raise ValueError(f"x0 must hold n >= 1 tokens, got shape {x0.shape}")
    if x0.shape[-1] < 2:
        raise ValueError(f"x0 must have dimension d >= 2, got shape {x0.shape}")
    if batched and x0.shape[0] < 1:
        raise ValueError(f"x0 must hold batch >= 1 systems, got shape {x0.shape}")
    check_finite("x0", x0)
    # Summed in float64 without a float64 copy of x0 (4x faster: the copy cost 10% of a short run).
    norms = np.sqrt(np.einsum("...i,...i->...", x0, x0, dtype=np.float64))
    tol = UNIT_NORM_TOL[x0.dtype]
    if np.max(np.abs(norms - 1.0)) > tol:
        worst = norms.flat[np.argmax(np.abs(norms - 1.0))]
        raise ValueError(
            f"x0 rows must have unit norm (tolerance {tol:g} for {x0.dtype}), got a row of "
            f"norm {worst!r}; normalise with x0 / np.linalg.norm(x0, axis=-1, keepdims=True)"
        )
    batch = x0.shape[0] if batched else 1
    n, d = x0.shape[-2:]
    Q, K, V = (_check_matrix(name, M, d, batch if batched else None) for name, M in (("Q", Q), ("K", K), ("V", V)))
    params = SimulationParams(
        beta=beta,
        t_max=t_max,
        dt=dt,
        dynamics=dynamics,
        method=method,
        save_every=save_every,
        rtol=rtol,
        atol=atol,
        Q=Q,
        K=K,
        V=V,
        dtype=str(x0.dtype),
    )
    torch_threads = threads
    threads = check_threads(threads)
    check_step(
        params.beta,
        params.dt,
        A=_interaction(params),
        V=params.V,
        dynamics=params.dynamics,
        method=params.method,
        stacklevel=2,
    )
    loop = run if cuda.resolve_device(device) == "cpu" else _cuda_run
    with thread_limit(threads, torch_threads):
        if store is not None:
            return _run_to_store(x0, params, store, progress, loop)
        frames, ts, counts = [], [], {}
        for t, x in loop(x0, params, progress=progress, step_counts=counts):
            ts.append(t)
            frames.append(x)
    return Trajectory(
        ts=np.array(ts),
        xs=np.stack(frames),
        params=params,
        n_accepted=counts.get("n_accepted"),
        n_rejected=counts.get("n_rejected"),
    )


def _run_to_store(x0, params, store, progress, loop=None):
    """Hand every frame of ``loop`` (``run`` or ``_cuda_run``) to the writer of ``store`` as
    it is computed; the stored run, read back lazily."""
    loop = run if loop is None else loop
    with io.open_run(store, x0, params) as writer:
        if not writer.complete:
            # User coordinates (in_span=False): a resumed run then reproduces the
            # uninterrupted one bit for bit.
            for t, x in loop(x0, params, progress=progress, start=writer.start, in_span=False):
                writer.append(t, x)
    return io.load(writer.path)


def run(
    x0, params, *, progress=False, start=None, in_span=True, step_counts=None, save_steps=None, fn=None, redraw=None
):
    """The one time loop: yield (t, state) for every saved frame of the run ``params``.

    ``x0`` is validated by the caller. With ``start = (frame_index, t, x)``, the run
    continues from a saved frame (used to resume a stored run); the first frame yielded is
    the one after it. ``in_span=False`` keeps the state in user coordinates even where the
    field could run in the span of x0 (see ``make_field``): stored runs do, so that a
    resumed run reproduces the uninterrupted one bit for bit. A ``step_counts`` dict
    receives dopri5's "n_accepted" and "n_rejected" after every frame.

    For ensembles that keep statistics instead of frames (the phase diagram), with the
    fixed-step methods only:

    - ``save_steps``: the steps of the grid to hand out, non-decreasing from 0 (default:
      ``params.frame_steps()``); the run ends at the last.
    - ``fn``: hand out ``fn(x)`` instead of a copy of the state, ``x`` being the state in
      the observables' coordinate-major layout (B, dp, n) (only valid during the call).
    - ``redraw = (steps, draw)``: on reaching each of these steps (before its save), the
      interaction and value matrices become those of ``draw()``, a
      ``particles.ensembles.DrawnMatrices`` (``.A`` = Q^T K and ``.V``).
    """
    batched = x0.ndim == 3
    d = x0.shape[-1]
    step_times, last_step = params.step_grid()
    frame_steps = params.frame_steps() if save_steps is None else np.asarray(save_steps, dtype=np.int64)
    field = _field(x0, params, in_span=in_span, steps=int(frame_steps[-1]))
    x = field.pack(x0 if start is None else start[2])
    first = 0 if start is None else start[0] + 1
    frame_times = step_times[frame_steps]
    redraw_steps, draw = (np.empty(0, np.int64), None) if redraw is None else redraw
    if params.method == "dopri5":
        if save_steps is not None or redraw is not None:
            raise ValueError("save_steps and redraw need a fixed-step method, not dopri5")
        stepper = Dopri5(field, x, real_size=x0.shape[-2] * d, rtol=params.rtol, atol=params.atol, dt=params.dt)
    else:
        stepper = (Euler if params.method == "euler" else RK4)(field, x)

    def output():
        return field.unpack(x, d, batched) if fn is None else fn(field.coordinate_major(x))

    if first == 0:
        yield float(frame_times[0]), output()
        first = 1
    total = len(frame_times) - 1
    bar = tqdm(
        total=total,
        initial=first - 1,
        unit="frame",
        desc=f"simulate beta={params.beta:g}",
        disable=not progress or total < _PROGRESS_MIN_FRAMES,
    )
    with bar:
        for k in range(first, len(frame_times)):
            if params.method == "dopri5":
                ok, t_fail = stepper.advance_to(x, frame_times[k - 1], frame_times[k])
                if step_counts is not None:
                    step_counts.update(n_accepted=stepper.n_accepted, n_rejected=stepper.n_rejected)
                if not ok:
                    _raise_dopri5_failure(params, stepper, t_fail)
            else:
                s0, s1 = frame_steps[k - 1], frame_steps[k]
                for s in redraw_steps[(redraw_steps > s0) & (redraw_steps <= s1)]:
                    _advance_fixed(stepper, x, params, s0, s, step_times, last_step)
                    # The state keeps its layout: a field of the same shape reads it as is.
                    drawn = draw()
                    field = _field(x0, params, in_span=False, A=drawn.A, V=drawn.V)
                    stepper = (Euler if params.method == "euler" else RK4)(field, x)
                    s0 = s
                _advance_fixed(stepper, x, params, s0, s1, step_times, last_step)
            bar.update(1)
            yield float(frame_times[k]), output()


def _cuda_run(x0, params, *, progress=False, start=None, in_span=False, step_counts=None):
    """``run`` on the GPU (``particles.cuda``): the same frames, "euler" and "rk4" only."""
    frames = cuda.run(
        x0, _interaction(params), params.V, params, start=start, on_failure=lambda t, s: _raise_non_finite(params, t, s)
    )
    total = len(params.frame_steps()) - (0 if start is None else start[0] + 1)
    return tqdm(frames, total=total, unit="frame", desc=f"simulate beta={params.beta:g} (cuda)", disable=not progress)


def _advance_fixed(stepper, x, params, s0, s1, step_times, last_step):
    """Steps s0 -> s1 of the grid; only the very last step of a run may be shorter than dt."""
    short = s1 == len(step_times) - 1 and last_step != params.dt
    n_full = s1 - s0 - short
    done = stepper.advance(x, params.dt, n_full)
    if done < n_full:
        _raise_non_finite(params, step_times[s0 + done + 1], s0 + done + 1)
    if short and stepper.advance(x, last_step, 1) < 1:
        _raise_non_finite(params, step_times[s1], s1)


def _field(x0, params, *, in_span=True, A=None, V=None, steps=None):
    """The field of the run (of ``steps`` steps, where known); ``A``, ``V`` (a redraw)
    replace the matrices of ``params``."""
    if A is None:
        A, V = _interaction(params), params.V
    return make_field(
        A=A,
        V=V,
        beta=params.beta,
        usa=params.dynamics == "USA",
        batch=x0.shape[0] if x0.ndim == 3 else 1,
        n=x0.shape[-2],
        d=x0.shape[-1],
        dtype=x0.dtype,
        # dopri5's error norm is per coordinate: keep the user's coordinates.
        x0=x0 if in_span and params.method != "dopri5" else None,
        evaluations=None if steps is None else steps * (4 if params.method == "rk4" else 1),
    )


def _interaction(params):
    """A = Q^T K, ([batch,] d, d), or None for the identity (Q = K = None)."""
    if params.Q is None and params.K is None:
        return None
    Q, K = params.Q, params.K
    if Q is None or K is None:
        return K if Q is None else np.swapaxes(Q, -1, -2).copy()
    return matmul(np.swapaxes(Q, -1, -2), K)


def _raise_non_finite(params, t, step):
    """The error of a run whose state or field became inf or NaN, with what can help."""
    hints = []
    if params.dtype == "float32":
        hints.append("float64 (x0.astype(np.float64))")
    if params.method != "dopri5":
        # A step too large for the field throws tokens far off the sphere in one go.
        hints.append("a smaller dt or method='dopri5'")
    hints.append("a lower beta")
    cause = (
        " (USA weights e^{beta <Q x_i, K x_j>} are not normalised and overflow at large beta)"
        if params.dynamics == "USA"
        else ""
    )
    raise RuntimeError(
        f"the state became non-finite at t = {t:g} (step {step}) with beta = {params.beta:g}, "
        f"dynamics {params.dynamics!r}, dtype {params.dtype}, method {params.method!r}, "
        f"dt = {params.dt:g}{cause}; try " + ", or ".join(hints)
    )


def _raise_dopri5_failure(params, stepper, t):
    step = stepper.n_accepted
    if stepper.failure == "non-finite":
        _raise_non_finite(params, t, step)
    raise RuntimeError(
        f"dopri5's step size fell below 1e-12 of the time scale at t = {t:g} (after {step} "
        f"accepted steps) of a {params.dynamics} run with beta = {params.beta:g}, dtype "
        f"{params.dtype}: rtol = {params.rtol:g} and atol = {params.atol:g} ask for more than "
        f"{params.dtype} can resolve; raise them" + (" or run in float64" if params.dtype == "float32" else "")
    )


def _check_matrix(name, M, d, batch):
    if M is None:
        return None
    M = as_float_array(name, M)
    allowed = [(d, d)] + ([(batch, d, d)] if batch is not None else [])
    if M.shape not in allowed:
        expected = " or ".join(str(s) for s in allowed)
        raise ValueError(f"{name} must have shape {expected}, got shape {M.shape}")
    check_finite(name, M)
    return M.astype(np.float64)
