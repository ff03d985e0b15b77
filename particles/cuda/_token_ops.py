"""Per-token device functions shared by the one-block-per-system kernels (``_small``,
``_phase``): thread t of a block owns tokens t, t + blockDim, ... (each token's arithmetic is
the same whatever the block size); states live in shared memory in the
coordinate-major layout ``y[k * n + i]`` (coordinate k of token i), so that the loops over
tokens j read consecutive addresses."""

import math

from numba import cuda

# Past this, e^x is inf in float64: clamping first keeps numba-cuda's simulator (Python's
# math.exp raises OverflowError) giving the GPU's answer, inf, as the CPU's vexp does.
EXP_MAX = 709.782712893384


@cuda.jit(device=True)
def exp(x):
    """e^x, inf past the float64 range (in the simulator too)."""
    return math.inf if x > EXP_MAX else math.exp(x)


@cuda.jit(device=True)
def inverse_norm(s):
    """1 / sqrt(s), inf at s = 0 (in the simulator too, where Python raises instead)."""
    return math.inf if s == 0.0 else 1.0 / math.sqrt(s)


@cuda.jit(device=True)
def load_state(x, b, y, n, d):
    """y <- x[b] (n, d) row layout -> coordinate-major."""
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        for k in range(d):
            y[k * n + i] = x[b, i, k]


@cuda.jit(device=True)
def store_state(y, x, b, n, d):
    """x[b] <- y, the inverse of ``load_state``."""
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        for k in range(d):
            x[b, i, k] = y[k * n + i]


@cuda.jit(device=True)
def images(A, W, y, ax, vx, n, d):
    """ax_i = A y_i and vx_i = W y_i for the tokens of this thread (A = beta Q^T K, W = V)."""
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        for k in range(d):
            sa = 0.0
            sv = 0.0
            for m in range(d):
                ym = y[m * n + i]
                sa += A[k, m] * ym
                sv += W[k, m] * ym
            ax[k * n + i] = sa
            vx[k * n + i] = sv


@cuda.jit(device=True)
def velocity(y, ax, vx, out, n, d, usa):
    """out_i = sum_j e^{<y_i, ax_j>} vx_j / Z_i, Z_i = sum_j of the numerators (SA) or n (USA).

    SA keeps a running maximum m of the logits and rescales the sums when it grows (the
    online softmax of flash attention): one pass over j, and no exponential overflows
    whatever beta Q^T K. USA has no shift, as on the CPU.
    """
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        for k in range(d):
            out[k * n + i] = 0.0
        m = -math.inf
        z = 0.0
        for j in range(n):
            logit = 0.0
            for k in range(d):
                logit += y[k * n + i] * ax[k * n + j]
            if usa:
                e = exp(logit)
            else:
                if logit > m:
                    scale = exp(m - logit)
                    z *= scale
                    for k in range(d):
                        out[k * n + i] *= scale
                    m = logit
                e = exp(logit - m)
            z += e
            for k in range(d):
                out[k * n + i] += e * vx[k * n + j]
        if usa:
            z = float(n)
        for k in range(d):
            out[k * n + i] /= z


@cuda.jit(device=True)
def project(y, v, n, d):
    """v_i <- v_i - <y_i, v_i> y_i, the tangent part at y_i."""
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        p = 0.0
        for k in range(d):
            p += y[k * n + i] * v[k * n + i]
        for k in range(d):
            v[k * n + i] -= p * y[k * n + i]


@cuda.jit(device=True)
def retract(x, v, h, out, n, d):
    """out_i = (x_i + h v_i) / |x_i + h v_i|; False when the result is not finite. out may be x."""
    ok = True
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        s = 0.0
        for k in range(d):
            t = x[k * n + i] + h * v[k * n + i]
            s += t * t
        r = inverse_norm(s)
        for k in range(d):
            out[k * n + i] = (x[k * n + i] + h * v[k * n + i]) * r
        if math.isinf(r) or math.isnan(r) or r == 0.0:
            ok = False
    return ok


@cuda.jit(device=True)
def axpy(x, a, v, out, n, d):
    """out_i = x_i + a v_i for the tokens of this thread."""
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        for k in range(d):
            out[k * n + i] = x[k * n + i] + a * v[k * n + i]


@cuda.jit(device=True)
def field(A, W, y, ax, vx, v, n, d, usa, tangent):
    """v <- the field at the block's state y (projected if ``tangent``); synchronises the
    block before (y complete) and after (ax, vx free to be overwritten)."""
    cuda.syncthreads()
    images(A, W, y, ax, vx, n, d)
    cuda.syncthreads()
    velocity(y, ax, vx, v, n, d, usa)
    if tangent:
        project(y, v, n, d)
    cuda.syncthreads()


@cuda.jit(device=True)
def euler_step(A, W, y, ax, vx, v, h, n, d, usa):
    """One step of the authors' scheme y_i <- (y_i + h v_i) / |y_i + h v_i|, v unprojected;
    False (for this thread's tokens) when the new state is not finite."""
    field(A, W, y, ax, vx, v, n, d, usa, False)
    return retract(y, v, h, y, n, d)


@cuda.jit(device=True)
def rk4_step(A, W, x, y, ax, vx, v, acc, h, n, d, usa):
    """One classical Runge-Kutta step of the projected field, renormalised (as ``RK4`` on
    the CPU); y and v are stage scratch, acc collects k1 + 2 k2 + 2 k3 + k4."""
    field(A, W, x, ax, vx, v, n, d, usa, True)
    axpy(v, 0.0, v, acc, n, d)
    axpy(x, 0.5 * h, v, y, n, d)
    field(A, W, y, ax, vx, v, n, d, usa, True)
    axpy(acc, 2.0, v, acc, n, d)
    axpy(x, 0.5 * h, v, y, n, d)
    field(A, W, y, ax, vx, v, n, d, usa, True)
    axpy(acc, 2.0, v, acc, n, d)
    axpy(x, h, v, y, n, d)
    field(A, W, y, ax, vx, v, n, d, usa, True)
    axpy(acc, 1.0, v, acc, n, d)
    return retract(x, acc, h / 6.0, x, n, d)
