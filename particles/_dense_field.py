"""The velocity field for d > 8: torch matrix products (see ``_fields``)."""
import numpy as np
import torch

from ._fields import _MAX_BOUND_SPREAD as _MAX_SPREAD
from ._fields import _Field

# Tokens per block of the symmetric path; it runs from two blocks on.
_BLOCK = 256


def span_basis(x0):
    """(B, d, n) orthonormal bases, per system, of spaces holding the rows of x0 ([B,] n, d).

    With V = I every velocity sum_j w_ij x_j (and its tangent part) is a combination of
    the tokens, so the tokens stay in the span of their initial positions for all time.
    """
    x0 = torch.from_numpy(np.asarray(x0, dtype=np.float64))
    return torch.linalg.qr(x0.reshape((-1,) + x0.shape[-2:]).transpose(1, 2))[0].numpy()


class DenseField(_Field):
    """torch matrix products, on states in the row layout (B, n, d) that BLAS prefers.

    With a ``basis`` U (B, d, n) of the span of the initial tokens (V = I), states are the
    coordinates y = x U (B, n, n) and the interaction matrix is U^T A U: the same dynamics,
    exactly, in dimension n instead of d, so each step costs n/d of the direct one.
    """

    def __init__(self, *, A, V, beta, usa, batch, n, dtype, basis=None):
        d = A.shape[-1]
        identity = np.array_equal(A, np.eye(d))
        self.basis = None
        if basis is not None:
            self.basis = basis.astype(dtype)
            d = basis.shape[-1]
            # U^T U = I exactly in exact arithmetic: keep the identity exact.
            A = np.eye(d) if identity else np.swapaxes(basis, 1, 2) @ A @ basis
            V = np.eye(d)
        self.dp = d
        super().__init__(A=A, V=V, beta=beta, usa=usa, batch=batch, n=n, dtype=dtype)
        # Identity matrices (the default) skip their (d x d) products: at n < d those would
        # cost more than the logits themselves.
        self._beta = float(beta)
        self._BA_T = None if identity else torch.from_numpy(self.BA).transpose(1, 2)
        self._V_T = None if np.array_equal(V, np.eye(d)) else torch.from_numpy(self.V).transpose(1, 2)
        # A symmetric BA makes the logits symmetric: the blocked path forms each pair of
        # token blocks once, with a bound shift in place of row maxima (as the fused kernels).
        bound = float(beta * (1.0 if identity else np.linalg.norm(A, ord=2, axis=(-2, -1)).max()))
        symmetric = np.array_equal(self.BA, np.swapaxes(self.BA, 1, 2))
        self._block = _BLOCK if n >= 2 * _BLOCK and symmetric and 2 * bound <= _MAX_SPREAD else None
        self._shift = 0.0 if usa else bound

    def pack(self, x):
        """([B,] n, d) -> (B, n, d), or its coordinates (B, n, n) in the basis (a copy)."""
        x = x.reshape((-1,) + x.shape[-2:])
        return np.array(x) if self.basis is None else x @ self.basis

    def unpack(self, x, d, batched):
        out = x.copy() if self.basis is None else x @ np.swapaxes(self.basis, 1, 2)
        return out if batched else out[0]

    def coordinate_major(self, x):
        # Padded to a multiple of 4 coordinates, as the observable kernels expect. In the
        # basis, inner products between tokens are those of the coordinates.
        out = np.zeros((x.shape[0], -(-self.dp // 4) * 4, x.shape[1]), x.dtype)
        out[:, : self.dp, :] = np.swapaxes(x, 1, 2)
        return out

    def velocity(self, x, project, out):
        xt, ot = torch.from_numpy(x), torch.from_numpy(out)
        ax = self._beta * xt if self._BA_T is None else xt @ self._BA_T
        vx = xt if self._V_T is None else xt @ self._V_T
        if self._block is not None:
            self._blocked_sums(xt, ax, vx, ot)
        else:
            logits = xt @ ax.transpose(1, 2)
            # torch's softmax subtracts the exact row maxima itself.
            weights = logits.exp_().div_(logits.shape[2]) if self.usa else torch.softmax(logits, dim=2)
            # matmul(..., out=) measured slower than a product and a copy.
            ot.copy_(weights @ vx)
        if project:
            ot.sub_((xt * ot).sum(dim=2, keepdim=True) * xt)

    def _blocked_sums(self, xt, ax, vx, ot):
        """ot <- softmax-weighted sums, each block pair (I <= J) of logits formed once.

        Block I gets e^{L_IJ - c} V x_J and block J gets its transpose times V x_I; the
        row sums Z come along, and the division is done on the (n, d) result.
        """
        n, m = xt.shape[1], self._block
        starts = range(0, n, m)
        z = torch.zeros(xt.shape[:2] + (1,), dtype=xt.dtype)
        ot.zero_()
        for i in starts:
            rows = slice(i, i + m)
            for j in starts[i // m:]:
                cols = slice(j, j + m)
                e = (xt[:, rows] @ ax[:, cols].transpose(1, 2)).sub_(self._shift).exp_()
                ot[:, rows].baddbmm_(e, vx[:, cols])
                z[:, rows] += e.sum(dim=2, keepdim=True)
                if j != i:
                    ot[:, cols].baddbmm_(e.transpose(1, 2), vx[:, rows])
                    z[:, cols] += e.sum(dim=1).unsqueeze(2)
        ot.div_(n if self.usa else z)

    def retract(self, x, v, h, out):
        y = torch.add(torch.from_numpy(x), torch.from_numpy(v), alpha=h, out=torch.from_numpy(out))
        norms = torch.linalg.vector_norm(y, dim=2, keepdim=True)
        y.div_(norms)
        # A non-finite or zero row shows in its norm: no need to scan every entry.
        return bool(torch.isfinite(norms).all() and (norms > 0).all())

    def axpy(self, x, a, v, out):
        torch.add(torch.from_numpy(x), torch.from_numpy(v), alpha=a, out=torch.from_numpy(out))

    def rk4_combine(self, k1, k2, k3, k4, out):
        t = [torch.from_numpy(k) for k in (k1, k2, k3, k4)]
        torch.from_numpy(out).copy_((t[0] + 2.0 * (t[1] + t[2]) + t[3]) / 6.0)
