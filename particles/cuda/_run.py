"""The GPU time loop of ``simulate(..., device="cuda")``: the state stays on the device;
each saved frame is one launch (or, for large systems, one run of tiled launches) and one
copy back."""

import numpy as np
from numba import cuda

from . import _small
from ._tiled import TiledStepper

METHODS = ("euler", "rk4")


def check_method(method):
    """ValueError unless the GPU runs ``method``."""
    if method not in METHODS:
        raise ValueError(
            f"device='cuda' runs method 'euler' or 'rk4', got method={method!r}; "
            f"use device='cpu' for {method!r} (its adaptive step is shared by the batch on the host)"
        )


def run(x0, A, V, params, *, start=None, on_failure, tile=None):
    """Yield (t, state) for every saved frame of the run ``params`` on the GPU.

    Args:
        x0: ([batch,] n, d) validated initial state; its dtype is the run's precision.
        A, V: interaction matrix beta-free Q^T K and value matrix, each None (identity),
            (d, d) or (batch, d, d).
        params: the run's ``SimulationParams`` (method "euler" or "rk4").
        start: (frame index, t, state) to continue from a saved frame, as ``_simulate.run``.
        on_failure: called as on_failure(t, step) when a state becomes non-finite; raises.
        tile: force the tiled kernels with this tile edge (tests); default: one block per
            system where it fits in shared memory, tiles of ``_tiled.TILE`` otherwise.
    """
    check_method(params.method)
    batched = x0.ndim == 3
    n, d = x0.shape[-2:]
    dtype = x0.dtype
    eye = np.eye(d)
    BA = _matrices(params.beta * (eye if A is None else np.asarray(A)), dtype)
    Vm = _matrices(eye if V is None else np.asarray(V), dtype)
    state = x0 if start is None else start[2]
    x = cuda.to_device(np.ascontiguousarray(state.reshape((-1, n, d))))
    BA, Vm = cuda.to_device(BA), cuda.to_device(Vm)
    B = x.shape[0]
    usa = params.dynamics == "USA"
    completed = cuda.to_device(np.zeros(B, np.int64))
    if tile is None and _small.fits(n, d, dtype, params.method):
        stepper = None
    else:
        stepper = TiledStepper(x, BA, Vm, usa, params.method, **({} if tile is None else {"tile": tile}))

    def advance(h, n_steps, first_step):
        if n_steps <= 0:
            return
        completed.copy_to_device(np.full(B, n_steps, np.int64))
        if stepper is None:
            _small.advance(x, BA, Vm, usa, h, n_steps, params.method, completed)
        else:
            stepper.advance(x, h, n_steps, completed)
        done = int(completed.copy_to_host().min())
        if done < n_steps:
            step = first_step + done + 1
            on_failure(step_times[step], step)

    def output():
        out = x.copy_to_host()
        return out if batched else out[0]

    step_times, last_step = params.step_grid()
    frame_steps = params.frame_steps()
    first = 0 if start is None else start[0] + 1
    if first == 0:
        yield float(step_times[frame_steps[0]]), output()
        first = 1
    final = len(step_times) - 1
    for k in range(first, len(frame_steps)):
        s0, s1 = int(frame_steps[k - 1]), int(frame_steps[k])
        # Only the very last step of a run may be shorter than dt.
        short = s1 == final and last_step != params.dt
        advance(params.dt, s1 - s0 - short, s0)
        if short:
            advance(last_step, 1, s1 - 1)
        yield float(step_times[s1]), output()


def _matrices(M, dtype):
    """(d, d) or (batch, d, d) -> a contiguous (1 or batch, d, d) array of the state's dtype."""
    M = np.asarray(M, np.float64)
    return np.ascontiguousarray(M.reshape((-1,) + M.shape[-2:]).astype(dtype))
