"""What the fused and the dense fields share: the dimension where one takes over from the
other, the base class of fields (parameters, packing into and out of a field's layout),
and matrix products computed the way the dense field needs them."""

import numpy as np
import torch

# Up to this dimension the fused kernels win (benchmarks/bench_simulate.py).
MAX_FUSED_D = 8


def matmul(a, b):
    """a @ b for NumPy arrays of matrices; in torch past ``MAX_FUSED_D``, where the dense
    field runs: NumPy's OpenBLAS threads keep spinning for a while after a call, and a
    torch product started then competes with them for the cores (see ``DenseField``)."""
    if a.shape[-1] <= MAX_FUSED_D:
        return a @ b
    return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b))).numpy()


class FieldBase:
    """Parameters and the layout conversions every field shares."""

    dp: int
    # True when the field runs whole Euler steps itself (``euler``), without the per-step
    # velocity and retraction passes.
    fused_euler = False

    def __init__(self, *, A, V, beta, usa, batch, n, dtype, shift, row_max):
        self.usa = bool(usa)
        # None stays None: the identity (dense fields only).
        self.BA = None if A is None else _pad(beta * A, self.dp, dtype)
        self.V = None if V is None else _pad(V, self.dp, dtype)
        # (batch,) logit shifts of SA (see _MAX_GAP), 0 for USA and with row maxima.
        self.shift = np.ascontiguousarray(shift, dtype=np.float64)
        # Exact row maxima in place of the shift (SA only), for every system of the field.
        self.row_max = bool(row_max) and not self.usa

    def pack(self, x):
        """([B,] n, d) user layout -> (B, dp, n) kernel layout (a copy)."""
        x = x.reshape((-1,) + x.shape[-2:])
        out = np.zeros((x.shape[0], self.dp, x.shape[1]), x.dtype)
        out[:, : x.shape[2], :] = np.swapaxes(x, 1, 2)
        return out

    def unpack(self, x, d, batched):
        """(B, dp, n) kernel layout -> ([B,] n, d) user layout (a copy)."""
        # np.array copies always: ascontiguousarray returns a view when n = 1.
        out = np.array(np.swapaxes(x[:, :d, :], 1, 2), order="C")
        return out if batched else out[0]


def _pad(M, dp, dtype):
    out = np.zeros(M.shape[:-2] + (dp, dp), dtype)
    out[..., : M.shape[-2], : M.shape[-1]] = M
    return out.reshape((-1, dp, dp))
