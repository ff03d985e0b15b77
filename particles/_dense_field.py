"""The velocity field for d > 8: torch matrix products (see ``_fields``)."""

import numpy as np
import torch

from . import _kernels
from ._field_base import FieldBase, matmul

# Tokens per key block of the blocked paths; they run from two blocks on, so that no
# (n x n) logits are ever formed and memory grows like n (d + _BLOCK), not n^2.
_BLOCK = 256
BLOCKED_MIN_N = 2 * _BLOCK
# Logits per tile (all systems together): 32 MB in float64. Tiles are as large as this
# allows: on shared cores every torch call waits for all its threads to be scheduled, so
# fewer and larger calls are faster (measured at n = 2048, d = 64 under load: panels of
# 1024 rows 1.25x the torch loop, of 256 rows 0.5x), while memory stays below n (d + 256)
# per system plus this budget.
_TILE = 2**22


# The span's setup (a QR in float64, the state into and out of its coordinates) against
# what each field evaluation saves, 4 n^2 (d - n) of 4 n^2 d flops: the span pays from
# about K d / (d - n) evaluations, K measured on the grid of benchmarks/bench_grid.py
# (n in {32, 128, 256}, d in {64, 512}; break-even K from 5 to 10 in float64, 8 to 28 in
# float32, whose products run twice as fast).
_SPAN_PAYS_AFTER = {np.dtype(np.float64): 8.0, np.dtype(np.float32): 16.0}


def span_pays(n, d, dtype, evaluations):
    """Whether a run of ``evaluations`` field evaluations is faster in the span of x0 (it
    needs d >= 2 n); None: a run of unknown length, taken as long."""
    if d < 2 * n:
        return False
    return evaluations is None or evaluations >= _SPAN_PAYS_AFTER[np.dtype(dtype)] * d / (d - n)


def span_basis(x0):
    """(B, d, n) orthonormal bases, per system, of spaces holding the rows of x0 ([B,] n, d).

    With V = I every velocity sum_j w_ij x_j (and its tangent part) is a combination of
    the tokens, so the tokens stay in the span of their initial positions for all time.
    """
    x0 = torch.from_numpy(np.asarray(x0, dtype=np.float64))
    # One thread: LAPACK's QR rounds differently with the thread count (measured), and
    # runs must not depend on it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.qr(x0.reshape((-1,) + x0.shape[-2:]).transpose(1, 2))[0].numpy()
    finally:
        torch.set_num_threads(threads)


class DenseField(FieldBase):
    """torch matrix products, on states in the row layout (B, n, d) that BLAS prefers.

    With a ``basis`` U (B, d, n) of the span of the initial tokens (V = I), states are the
    coordinates y = x U (B, n, n) and the interaction matrix is U^T A U: the same dynamics,
    exactly, in dimension n instead of d, so each step costs n/d of the direct one.

    Every product runs in torch, never in NumPy: NumPy's OpenBLAS threads keep spinning
    for a while after a call, and a torch product started then competes with them for the
    cores (measured: a QR 20x slower right after a NumPy matrix product).
    """

    fused_euler = True

    def __init__(self, *, A, V, beta, usa, batch, n, d, dtype, shift, row_max, basis=None):
        """A, V: as in ``make_field`` (None: the identity)."""
        self.basis = None
        if basis is not None:
            self.basis = torch.from_numpy(basis.astype(dtype))
            d = basis.shape[-1]
            # U^T U = I exactly in exact arithmetic: keep the identity exact. The logits are
            # those of the user's coordinates, so the shift (a bound on them) holds as is.
            if A is not None:
                A = matmul(matmul(np.swapaxes(basis, 1, 2), A), basis)
            V = None
        if V is not None and np.array_equal(V, np.broadcast_to(np.eye(d), V.shape)):
            V = None
        self.dp = d
        super().__init__(A=A, V=V, beta=beta, usa=usa, batch=batch, n=n, dtype=dtype, shift=shift, row_max=row_max)
        # Identity matrices (the default) skip their (d x d) products: at n < d those would
        # cost more than the logits themselves.
        self._beta = float(beta)
        self._BA_T = None if A is None else torch.from_numpy(self.BA).transpose(1, 2)
        self._V_T = None if V is None else torch.from_numpy(self.V).transpose(1, 2)
        # The shift of each system (0 with row maxima, which torch.softmax takes), (B, 1, 1):
        # it rides in the logits' product as its added input, so it costs no pass.
        self._shift = torch.from_numpy(self.shift.astype(dtype)).reshape(-1, 1, 1)
        self._minus_shift = -self._shift
        # From BLOCKED_MIN_N tokens on, the logits come by blocks (``_blocked_sums``). A
        # symmetric BA makes them symmetric: then each pair of token blocks is formed once
        # (with a shift; row maxima would differ between a block and its transpose).
        symmetric = A is None or np.array_equal(self.BA, np.swapaxes(self.BA, 1, 2))
        self._block = _BLOCK if n >= BLOCKED_MIN_N else None
        self._pairs = self._block is not None and symmetric and not self.row_max

    def pack(self, x):
        """([B,] n, d) -> (B, n, d), or its coordinates (B, n, n) in the basis (a copy)."""
        x = x.reshape((-1,) + x.shape[-2:])
        return np.array(x) if self.basis is None else (torch.from_numpy(x) @ self.basis).numpy()

    def unpack(self, x, d, batched):
        if self.basis is None:
            out = x.copy()
        else:
            out = (torch.from_numpy(x) @ self.basis.transpose(1, 2)).numpy()
        return out if batched else out[0]

    def coordinate_major(self, x):
        # Padded to a multiple of 4 coordinates, as the observable kernels expect. In the
        # basis, inner products between tokens are those of the coordinates.
        out = np.zeros((x.shape[0], -(-self.dp // 4) * 4, x.shape[1]), x.dtype)
        out[:, : self.dp, :] = np.swapaxes(x, 1, 2)
        return out

    def _sums(self, xt):
        """(S, z): S_i = sum_j e^{L_ij - c} V x_j and its normaliser z, so that the
        velocity is S / z (z = the row sums for SA, n for USA; z = 1 where S comes
        normalised from torch.softmax)."""
        vx = xt if self._V_T is None else xt @ self._V_T
        if self._block is not None:
            ax = self._beta * xt if self._BA_T is None else xt @ self._BA_T
            return self._blocked_sums(xt, ax, vx)
        # beta and the shift ride in the product (alpha, and the added input): no passes.
        if self._BA_T is None:
            logits = torch.baddbmm(self._minus_shift, xt, xt.transpose(1, 2), alpha=self._beta)
        else:
            logits = torch.baddbmm(self._minus_shift, xt, (xt @ self._BA_T).transpose(1, 2))
        # float32 SA: torch's softmax (row maxima, exponentials, sums and the division in
        # one vectorised pass) beats its exp alone (measured: 21 against 30 us for 256 x 256
        # logits); the shift then changes nothing.
        if self.row_max or (logits.dtype == torch.float32 and not self.usa):
            return torch.softmax(logits, dim=2) @ vx, 1.0
        if logits.dtype == torch.float64:
            z = torch.empty(logits.shape[:2] + (1,), dtype=logits.dtype)
            _kernels.exp_rows(logits.numpy(), z.numpy())
        else:
            z = logits.exp_().sum(dim=2, keepdim=True)
        return logits @ vx, (logits.shape[2] if self.usa else z)

    def velocity(self, x, project, out):
        xt, ot = torch.from_numpy(x), torch.from_numpy(out)
        S, z = self._sums(xt)
        torch.div(S, z, out=ot)
        if project:
            ot.sub_((xt * ot).sum(dim=2, keepdim=True) * xt)

    def euler(self, x, h, n_steps):
        """n_steps of the authors' Euler scheme in place; returns the number of steps after
        which every system is still finite. The step x + h S / z is one pass over (n, d).

        Finiteness is checked once, at the end: a non-finite or zero row never becomes finite
        again (its NaN reaches every logit of its system, and division keeps it), so a
        failed stretch is replayed from a copy, step by step, to find the first bad step.
        """
        xt = torch.from_numpy(x)
        start = xt.clone()
        for _ in range(n_steps):
            self._euler_step(xt, h)
        if bool(torch.isfinite(xt).all()):
            return n_steps
        xt.copy_(start)
        for step in range(n_steps):
            self._euler_step(xt, h)
            if not bool(torch.isfinite(xt).all()):
                return step
        return n_steps

    def _euler_step(self, xt, h):
        S, z = self._sums(xt)
        if isinstance(z, torch.Tensor):
            xt.addcdiv_(S, z, value=h)
        else:
            xt.add_(S, alpha=h / z)
        xt.div_(torch.linalg.vector_norm(xt, dim=2, keepdim=True))

    def _blocked_sums(self, xt, ax, vx):
        """(S, z) of ``_sums`` by token blocks, never more than max(_TILE, B n _BLOCK) logits
        at a time.

        For SA the values carry a column of ones: the products that weight the values then
        also sum the weights, so z costs no pass of its own.
        """
        if not self.usa:
            vx = torch.cat([vx, torch.ones(vx.shape[:2] + (1,), dtype=vx.dtype)], dim=2)
        sums = self._pair_sums(xt, ax, vx) if self._pairs else self._streamed_sums(xt, ax, vx)
        return (sums, xt.shape[1]) if self.usa else (sums[..., :-1], sums[..., -1:])

    def _exp_(self, e):
        """e <- exp(e) in place (float64: ``vexp``, twice as fast as torch's exp here)."""
        if e.dtype == torch.float64:
            _kernels.exp_rows(e.numpy(), np.empty(e.shape[:2] + (1,)))
            return e
        return e.exp_()

    def _pair_sums(self, xt, ax, vx):
        """sum_j e^{L_ij - c} vx_j (B, n, dv) for symmetric logits, each pair of token
        blocks (I <= J) formed once, one row panel (I, J >= I) of (B, m, n - I m) logits at a
        time: block I gets the panel times vx_{J >= I}, the blocks past I the panel's
        transpose (without the diagonal block) times vx_I. Logits formed: n^2 / 2 + n m / 2.
        """
        B, n = xt.shape[:2]
        # Panel rows: whole blocks, at most half the tokens (a panel of all rows would
        # form every logit twice) and within the tile budget.
        m = self._block * max(1, min(n // 2, _TILE // (B * n)) // self._block)
        sums = torch.zeros(xt.shape[:2] + (vx.shape[2],), dtype=xt.dtype)
        for i in range(0, n, m):
            rows = slice(i, i + m)
            e = self._exp_(torch.baddbmm(self._minus_shift, xt[:, rows], ax[:, i:].transpose(1, 2)))
            sums[:, rows].baddbmm_(e, vx[:, i:])
            if i + m < n:
                sums[:, i + m :].baddbmm_(e[:, :, m:].transpose(1, 2), vx[:, rows])
        return sums

    def _streamed_sums(self, xt, ax, vx):
        """sum_j e^{L_ij - c_i} vx_j (B, n, dv), streamed over key blocks as flash attention
        does (Dao et al., 2022): per tile of query rows, the logits of one key block at a
        time. With row maxima, c_i is the running maximum of row i over the blocks seen so
        far, and the sums so far are rescaled by e^{c_old - c_new} whenever it grows; with
        a shift, c_i = c for all rows and nothing is rescaled.
        """
        B, n = xt.shape[:2]
        m = self._block
        tile_rows = max(m, _TILE // (B * m))
        sums = torch.empty(xt.shape[:2] + (vx.shape[2],), dtype=xt.dtype)
        for i in range(0, n, tile_rows):
            rows = slice(i, i + tile_rows)
            acc = sums[:, rows]
            acc.zero_()
            top = None
            for j in range(0, n, m):
                cols = slice(j, j + m)
                e = torch.baddbmm(self._minus_shift, xt[:, rows], ax[:, cols].transpose(1, 2))
                if self.row_max:
                    block_top = e.amax(dim=2, keepdim=True)
                    if top is None:
                        top = block_top
                    else:
                        grown = torch.maximum(top, block_top)
                        acc.mul_((top - grown).exp_())
                        top = grown
                    e.sub_(top)
                acc.baddbmm_(self._exp_(e), vx[:, cols])
        return sums

    @staticmethod
    def _normalize(yt):
        """Rows of yt to unit norm in place; False if any row is not finite or zero."""
        norms = torch.linalg.vector_norm(yt, dim=2, keepdim=True)
        yt.div_(norms)
        # A non-finite or zero row shows in its norm (NaN fails both tests).
        low, high = torch.aminmax(norms)
        return bool(low > 0) and bool(high < np.inf)

    def retract(self, x, v, h, out):
        y = torch.add(torch.from_numpy(x), torch.from_numpy(v), alpha=h, out=torch.from_numpy(out))
        return self._normalize(y)

    def axpy(self, x, a, v, out):
        torch.add(torch.from_numpy(x), torch.from_numpy(v), alpha=a, out=torch.from_numpy(out))

    def rk4_combine(self, k1, k2, k3, k4, out):
        t = [torch.from_numpy(k) for k in (k1, k2, k3, k4)]
        torch.from_numpy(out).copy_((t[0] + 2.0 * (t[1] + t[2]) + t[3]) / 6.0)
