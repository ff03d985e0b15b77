"""Large systems: tiled kernels that never form the n x n weights (flash-attention style).

One step is three launches: ``transform`` (ax_j = beta Q^T K x_j and vx_j = V x_j, a tiled
product), ``attend`` (for a tile of query tokens, stream over tiles of key tokens with a
running maximum and sum per row, so memory stays O(n d)) and a per-token update (retraction,
or an RK4 stage). States are in the user's row layout (B, n, d) in global memory.

Why Numba CUDA and not torch here: the same kernels run in numba-cuda's simulator, so CI
checks them against the CPU solver, and ``attend`` needs no n x n buffer (torch's product
path would hold B n^2 logits: 2 GB per system at n = 16384 in float64). Its speed against
torch's GEMMs at n = 16384, d = 512 is what ``benchmarks/bench_gpu.py`` measures; it was not
measured yet (no GPU was available when it was written).
"""

import math
from functools import lru_cache

import numpy as np
from numba import cuda

from . import _token_ops as ops

# Tile edge: a block is TILE x TILE threads; each thread of ``attend`` keeps d / TILE
# partial sums, so d <= TILE * MAX_CHUNKS.
TILE = 16
MAX_CHUNKS = 64
UPDATE_THREADS = 128


def max_dimension(tile=TILE):
    return tile * MAX_CHUNKS


@lru_cache(maxsize=None)
def kernels(dtype, tile=TILE):
    """The tiled kernels for states of this dtype and tiles of ``tile`` x ``tile`` threads
    (tests use small tiles so that the simulator crosses many tile edges at tiny sizes)."""
    ftype = {np.dtype(np.float64): cuda.types.float64, np.dtype(np.float32): cuda.types.float32}[np.dtype(dtype)]
    T = tile

    @cuda.jit(cache=True)
    def transform(x, BA, V, ax, vx):
        """ax[b, j] = BA_b x[b, j] and vx[b, j] = V_b x[b, j]; block (k tile, j tile, b)."""
        n, d = x.shape[1], x.shape[2]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        k0, j0, b = cuda.blockIdx.x * T, cuda.blockIdx.y * T, cuda.blockIdx.z
        A = BA[b if BA.shape[0] > 1 else 0]
        W = V[b if V.shape[0] > 1 else 0]
        xs = cuda.shared.array((T, T), ftype)
        As = cuda.shared.array((T, T), ftype)
        Ws = cuda.shared.array((T, T), ftype)
        sa = 0.0
        sv = 0.0
        for m0 in range(0, d, T):
            j, m, k = j0 + ty, m0 + tx, k0 + ty
            xs[ty, tx] = x[b, j, m] if j < n and m < d else 0.0
            As[ty, tx] = A[k, m] if k < d and m < d else 0.0
            Ws[ty, tx] = W[k, m] if k < d and m < d else 0.0
            cuda.syncthreads()
            for mm in range(T):
                sa += As[tx, mm] * xs[ty, mm]
                sv += Ws[tx, mm] * xs[ty, mm]
            cuda.syncthreads()
        j, k = j0 + ty, k0 + tx
        if j < n and k < d:
            ax[b, j, k] = sa
            vx[b, j, k] = sv

    @cuda.jit(cache=True)
    def attend(x, ax, vx, usa, out):
        """out_i = sum_j e^{<x_i, ax_j>} vx_j / Z_i for a tile of query tokens i (block
        (i tile, b)); thread (ty, tx) serves query i0 + ty, key j0 + tx of each key tile and
        coordinates tx, tx + T, ... of the sums. SA: running row maximum m and sum Z, the
        sums rescaled by e^{m_old - m_new} when m grows; USA: no shift, Z = n."""
        n, d = x.shape[1], x.shape[2]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        i0, b = cuda.blockIdx.x * T, cuda.blockIdx.y
        i = i0 + ty
        qs = cuda.shared.array((T, T), ftype)
        ks = cuda.shared.array((T, T), ftype)
        P = cuda.shared.array((T, T), ftype)
        vs = cuda.shared.array((T, T), ftype)
        acc = cuda.local.array(MAX_CHUNKS, ftype)
        chunks = (d + T - 1) // T
        for r in range(chunks):
            acc[r] = 0.0
        m = -math.inf
        z = 0.0
        for j0 in range(0, n, T):
            s = 0.0
            for k0 in range(0, d, T):
                qs[ty, tx] = x[b, i, k0 + tx] if i < n and k0 + tx < d else 0.0
                ks[ty, tx] = ax[b, j0 + ty, k0 + tx] if j0 + ty < n and k0 + tx < d else 0.0
                cuda.syncthreads()
                for kk in range(T):
                    s += qs[ty, kk] * ks[tx, kk]
                cuda.syncthreads()
            P[ty, tx] = s
            cuda.syncthreads()
            scale = 1.0
            new_m = 0.0
            if not usa:
                new_m = m
                for c in range(min(T, n - j0)):
                    new_m = max(new_m, P[ty, c])
                scale = ops.exp(m - new_m)
            cuda.syncthreads()
            P[ty, tx] = ops.exp(s - new_m) if j0 + tx < n else 0.0
            cuda.syncthreads()
            row = 0.0
            for c in range(T):
                row += P[ty, c]
            z = z * scale + row
            m = new_m
            for r in range(chunks):
                k = r * T + tx
                vs[ty, tx] = vx[b, j0 + ty, k] if j0 + ty < n and k < d else 0.0
                cuda.syncthreads()
                t = 0.0
                for c in range(T):
                    t += P[ty, c] * vs[c, tx]
                acc[r] = acc[r] * scale + t
                cuda.syncthreads()
        if i < n:
            if usa:
                z = float(n)
            for r in range(chunks):
                k = r * T + tx
                if k < d:
                    out[b, i, k] = acc[r] / z

    @cuda.jit(cache=True)
    def project(x, v):
        """v_i <- v_i - <x_i, v_i> x_i; one thread per token."""
        g = cuda.grid(1)
        B, n, d = x.shape
        if g < B * n:
            b, i = g // n, g % n
            p = 0.0
            for k in range(d):
                p += x[b, i, k] * v[b, i, k]
            for k in range(d):
                v[b, i, k] -= p * x[b, i, k]

    @cuda.jit(cache=True)
    def axpy(x, a, v, out):
        """out = x + a v; one thread per token."""
        g = cuda.grid(1)
        B, n, d = x.shape
        if g < B * n:
            b, i = g // n, g % n
            for k in range(d):
                out[b, i, k] = x[b, i, k] + a * v[b, i, k]

    @cuda.jit(cache=True)
    def retract(x, v, h, out, step, completed):
        """out_i = (x_i + h v_i) / |x_i + h v_i|; a non-finite token lowers completed[b] to
        ``step`` (the steps done before it). out may be x."""
        g = cuda.grid(1)
        B, n, d = x.shape
        if g < B * n:
            b, i = g // n, g % n
            s = 0.0
            for k in range(d):
                t = x[b, i, k] + h * v[b, i, k]
                s += t * t
            r = ops.inverse_norm(s)
            for k in range(d):
                out[b, i, k] = (x[b, i, k] + h * v[b, i, k]) * r
            if math.isinf(r) or math.isnan(r) or r == 0.0:
                cuda.atomic.min(completed, b, step)

    return dict(transform=transform, attend=attend, project=project, axpy=axpy, retract=retract)


class TiledStepper:
    """Euler or RK4 steps of systems of any size through the tiled kernels; scratch is
    allocated once per run on the device."""

    def __init__(self, x, BA, V, usa, method, tile=TILE):
        B, n, d = x.shape
        if d > max_dimension(tile):
            raise ValueError(f"device='cuda' runs dimensions d <= {max_dimension(tile)}, got d = {d}")
        self.k = kernels(np.dtype(x.dtype), tile)
        self.BA, self.V, self.usa, self.method, self.tile = BA, V, bool(usa), method, tile
        n_buffers = 3 if method == "euler" else 5
        self.buffers = [cuda.device_array_like(x) for _ in range(n_buffers)]
        self.grid_transform = (-(-d // tile), -(-n // tile), B)
        self.grid_attend = (-(-n // tile), B)
        self.grid_tokens = -(-(B * n) // UPDATE_THREADS)

    def _field(self, y, out, tangent):
        k, T = self.k, self.tile
        ax, vx = self.buffers[0], self.buffers[1]
        k["transform"][self.grid_transform, (T, T)](y, self.BA, self.V, ax, vx)
        k["attend"][self.grid_attend, (T, T)](y, ax, vx, self.usa, out)
        if tangent:
            k["project"][self.grid_tokens, UPDATE_THREADS](y, out)

    def advance(self, x, h, n_steps, completed, first_step=0):
        """n_steps steps of size h in place; completed[b] is lowered to the steps done before
        a system's first non-finite state (counted from ``first_step``)."""
        k, G, U = self.k, self.grid_tokens, UPDATE_THREADS
        v = self.buffers[2]
        for step in range(first_step, first_step + n_steps):
            if self.method == "euler":
                self._field(x, v, False)
                k["retract"][G, U](x, v, h, x, step, completed)
                continue
            y, acc = self.buffers[3], self.buffers[4]
            self._field(x, v, True)
            k["axpy"][G, U](v, 0.0, v, acc)
            k["axpy"][G, U](x, 0.5 * h, v, y)
            self._field(y, v, True)
            k["axpy"][G, U](acc, 2.0, v, acc)
            k["axpy"][G, U](x, 0.5 * h, v, y)
            self._field(y, v, True)
            k["axpy"][G, U](acc, 2.0, v, acc)
            k["axpy"][G, U](x, h, v, y)
            self._field(y, v, True)
            k["axpy"][G, U](acc, 1.0, v, acc)
            k["retract"][G, U](x, acc, h / 6.0, x, step, completed)
