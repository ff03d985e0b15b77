"""The velocity field for d > 8: torch matrix products (see ``_fields``)."""
import numpy as np
import torch

from ._fields import _Field


class DenseField(_Field):
    """torch matrix products, on states in the row layout (B, n, d) that BLAS prefers."""

    def __init__(self, *, A, V, beta, usa, batch, n, dtype):
        self.dp = A.shape[-1]
        super().__init__(A=A, V=V, beta=beta, usa=usa, batch=batch, n=n, dtype=dtype)
        eye = np.eye(self.dp)
        # Identity matrices (the default) skip their (d x d) products: at n < d those would
        # cost more than the logits themselves.
        self._beta = float(beta)
        self._BA_T = None if np.all(A == eye) else torch.from_numpy(self.BA).transpose(1, 2)
        self._V_T = None if np.all(V == eye) else torch.from_numpy(self.V).transpose(1, 2)

    def pack(self, x):
        """([B,] n, d) -> (B, n, d) (a copy)."""
        return np.array(x.reshape((-1,) + x.shape[-2:]))

    def unpack(self, x, d, batched):
        return x.copy() if batched else x[0].copy()

    def coordinate_major(self, x):
        # Padded to a multiple of 4 coordinates, as the observable kernels expect.
        out = np.zeros((x.shape[0], -(-self.dp // 4) * 4, x.shape[1]), x.dtype)
        out[:, : self.dp, :] = np.swapaxes(x, 1, 2)
        return out

    def velocity(self, x, project, out):
        xt, ot = torch.from_numpy(x), torch.from_numpy(out)
        ax = self._beta * xt if self._BA_T is None else xt @ self._BA_T
        logits = xt @ ax.transpose(1, 2)
        # torch's softmax subtracts the exact row maxima itself.
        weights = logits.exp_().div_(logits.shape[2]) if self.usa else torch.softmax(logits, dim=2)
        # matmul(..., out=) measured slower than a product and a copy.
        ot.copy_(weights @ (xt if self._V_T is None else xt @ self._V_T))
        if project:
            ot.sub_((xt * ot).sum(dim=2, keepdim=True) * xt)

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
