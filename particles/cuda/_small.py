"""Small systems: one thread block per system, its threads sharing out the tokens, the whole
state in shared memory, many steps per launch (Geshkovski et al., 2023, the SA/USA dynamics).

A launch runs ``n_steps`` steps of one size h for every system; the host launches once per
saved frame, so only saved frames cross to the host.
"""

from functools import lru_cache

import numpy as np
from numba import cuda, int32

from . import _token_ops as ops
from ._device import simulator_enabled

# The shared memory a block may use without opting in to more (every CUDA GPU since 2012),
# less what the kernels declare statically (flags and counters).
SHARED_BYTES = 48 * 1024
STATIC_BYTES = 64
# Threads per block: up to 8 warps, each thread serving tokens t, t + threads, ...; small
# enough that any kernel's registers fit (255 per thread x 256 threads = the register file).
MAX_THREADS = 256
WARP = 32
# In the simulator every GPU thread is a Python thread: few, and not dividing n, so the
# tests also cover threads that serve several tokens.
SIMULATOR_THREADS = 3
# (n, d) arrays each method keeps in shared memory: Euler y, ax, vx, v; RK4 also x and the
# stage sum.
REGIONS = {"euler": 4, "rk4": 6}


def fits(n, d, dtype, method):
    """True when one block can hold a system of n tokens in d dimensions."""
    return REGIONS[method] * n * d * np.dtype(dtype).itemsize + STATIC_BYTES <= SHARED_BYTES


def launch_shape(n, d, dtype, method):
    """(threads per block, dynamic shared bytes) of a system of n tokens: whole warps on a
    GPU, a few threads in the simulator."""
    threads = min(n, SIMULATOR_THREADS) if simulator_enabled() else min(MAX_THREADS, -(-n // WARP) * WARP)
    return threads, REGIONS[method] * n * d * np.dtype(dtype).itemsize


@lru_cache(maxsize=None)
def kernels(dtype):
    """The Euler and RK4 kernels for states of this dtype (shared memory is typed)."""
    shared_type = {np.dtype(np.float64): cuda.types.float64, np.dtype(np.float32): cuda.types.float32}[np.dtype(dtype)]

    @cuda.jit(cache=True)
    def euler_steps(x, BA, V, usa, h, n_steps, completed):
        """n_steps steps of x_i <- (x_i + h v_i) / |x_i + h v_i| for system blockIdx.x.

        x: (B, n, d) states, advanced in place; BA, V: (B, d, d) or (1, d, d);
        completed[b]: the steps after which the state is still finite (n_steps unless it
        overflowed).
        """
        b = cuda.blockIdx.x
        n, d = x.shape[1], x.shape[2]
        dn = d * n
        shared = cuda.shared.array(0, shared_type)
        y, ax, vx, v = shared[:dn], shared[dn : 2 * dn], shared[2 * dn : 3 * dn], shared[3 * dn : 4 * dn]
        bad = cuda.shared.array(1, int32)
        A = BA[b if BA.shape[0] > 1 else 0]
        W = V[b if V.shape[0] > 1 else 0]
        ops.load_state(x, b, y, n, d)
        if cuda.threadIdx.x == 0:
            bad[0] = 0
        done = n_steps
        for step in range(n_steps):
            if not ops.euler_step(A, W, y, ax, vx, v, h, n, d, usa):
                bad[0] = 1
            cuda.syncthreads()
            if bad[0] != 0:
                done = step
                break
        ops.store_state(y, x, b, n, d)
        if cuda.threadIdx.x == 0:
            completed[b] = done

    @cuda.jit(cache=True)
    def rk4_steps(x, BA, V, usa, h, n_steps, completed):
        """As ``euler_steps``, for RK4 on the projected field, renormalised."""
        b = cuda.blockIdx.x
        n, d = x.shape[1], x.shape[2]
        dn = d * n
        shared = cuda.shared.array(0, shared_type)
        xs, y, ax = shared[:dn], shared[dn : 2 * dn], shared[2 * dn : 3 * dn]
        vx, v, acc = shared[3 * dn : 4 * dn], shared[4 * dn : 5 * dn], shared[5 * dn : 6 * dn]
        bad = cuda.shared.array(1, int32)
        A = BA[b if BA.shape[0] > 1 else 0]
        W = V[b if V.shape[0] > 1 else 0]
        ops.load_state(x, b, xs, n, d)
        if cuda.threadIdx.x == 0:
            bad[0] = 0
        done = n_steps
        for step in range(n_steps):
            if not ops.rk4_step(A, W, xs, y, ax, vx, v, acc, h, n, d, usa):
                bad[0] = 1
            cuda.syncthreads()
            if bad[0] != 0:
                done = step
                break
        ops.store_state(xs, x, b, n, d)
        if cuda.threadIdx.x == 0:
            completed[b] = done

    return {"euler": euler_steps, "rk4": rk4_steps}


def advance(x, BA, V, usa, h, n_steps, method, completed):
    """n_steps steps of size h of every system of the device array x (B, n, d), in place;
    ``completed`` (B,) int64 device array receives each system's finite steps."""
    B, n, d = x.shape
    threads, shared_bytes = launch_shape(n, d, x.dtype, method)
    kernels(x.dtype)[method][B, threads, 0, shared_bytes](x, BA, V, usa, h, n_steps, completed)
