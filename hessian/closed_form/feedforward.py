"""Feed-forward block ``FFN(Y) = phi(Y W_1 + b_1) W_2 + b_2``: parameter Hessians in closed form (theory note §4.3).

Row convention of the ``Transformer`` (``mlp.W_in`` (d, m) = W_1, ``mlp.b_in`` = b_1, ``mlp.W_out`` (m, K) = W_2,
``mlp.b_out`` = b_2). Per token t: ``h_t = y_t W_1 + b_1``, ``a_t = phi(h_t)``, ``FFN_t = a_t W_2 + b_2``; with the
loss gradient ``g_t = dl/dFFN_t`` and ``u_t = W_2 g_t`` (m,):

    dFFN_tk/dW_1[a, m] = y_ta phi'(h_tm) W_2[m, k],   dFFN_tk/db_1[m] = phi'(h_tm) W_2[m, k],
    dFFN_tk/dW_2[m, k'] = delta_kk' a_tm,              dFFN_tk/db_2[k'] = delta_kk';
    H_f(W_1, W_1)[(a, m), (a', m')] = delta_mm' sum_t u_tm phi''(h_tm) y_ta y_ta'   (0 a.e. for ReLU),
    H_f(W_1, W_2)[(a, m), (m', k)] = delta_mm' sum_t g_tk phi'(h_tm) y_ta,
    H_f(W_2, W_2) = 0,  every b_2 block of H_f = 0  (b_1 rows: drop y_ta).

So for ReLU the FFN's own functional curvature is only the W_1-W_2 and b_1-W_2 coupling.
"""

from __future__ import annotations

import enum
import math

import torch
from torch import Tensor

from ..block_matrix import BlockMatrix
from ..dense import HessianSplit
from .layernorm import _tensor, output_curvature

#: block names of ``feedforward_blocks``
NAMES = ("W_1", "b_1", "W_2", "b_2")


class Activation(str, enum.Enum):
    """Pointwise non-linearity phi."""

    RELU = "relu"
    #: exact (erf) GELU, ``h Phi(h)``
    GELU = "gelu"


def activation_derivatives(h: Tensor, activation: Activation | str) -> tuple[Tensor, Tensor, Tensor]:
    """``(phi(h), phi'(h), phi''(h))`` elementwise.

    ReLU: ``phi' = 1[h > 0]``, ``phi'' = 0`` (away from h = 0). GELU: with the standard normal density
    ``p`` and distribution ``Phi``, ``phi = h Phi``, ``phi' = Phi + h p``, ``phi'' = p (2 - h^2)``.

    Args:
        h: pre-activations (any shape).
        activation: "relu" or "gelu".

    Returns:
        Three tensors of the shape of ``h``.
    """
    kind = _activation(activation)
    if kind is Activation.RELU:
        return torch.relu(h), (h > 0).to(h.dtype), torch.zeros_like(h)
    p = torch.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + torch.erf(h / math.sqrt(2)))
    return h * Phi, Phi + h * p, p * (2 - h * h)


def _activation(activation: object) -> Activation:
    try:
        return Activation(activation)
    except ValueError:
        raise ValueError(f"activation must be one of {[a.value for a in Activation]}, got {activation!r}") from None


def feedforward(
    Y: Tensor, W_1: Tensor, b_1: Tensor, W_2: Tensor, b_2: Tensor, *, activation: Activation | str = "relu"
) -> Tensor:
    """``phi(Y W_1 + b_1) W_2 + b_2`` with Y (..., d), W_1 (d, m), b_1 (m,), W_2 (m, K), b_2 (K,) -> (..., K)."""
    phi = torch.relu if _activation(activation) is Activation.RELU else torch.nn.functional.gelu
    return phi(Y @ W_1 + b_1) @ W_2 + b_2


def feedforward_blocks(
    Y: Tensor,
    W_1: Tensor,
    b_1: Tensor,
    W_2: Tensor,
    b_2: Tensor,
    G: Tensor,
    Lam: Tensor,
    *,
    activation: Activation | str = "relu",
) -> HessianSplit:
    """Hessian of ``l(FFN(Y))`` over (W_1, b_1, W_2, b_2), split into H_o and H_f, from the output derivatives.

    ``H_o = B^T Lam B`` with B the Jacobian of vec FFN (formulas in the module docstring); H_f as above.

    Args:
        Y: (L, d) input tokens.
        W_1: (d, m); b_1: (m,); W_2: (m, K); b_2: (K,).
        G: (L, K) loss gradient at the output FFN(Y).
        Lam: (L, K, K) per-token or (L, K, L, K) full loss Hessian at the output.
        activation: "relu" or "gelu" (ReLU needs no pre-activation exactly at 0).

    Returns:
        ``HessianSplit`` of ``BlockMatrix`` over ``NAMES`` = ("W_1", "b_1", "W_2", "b_2"), row-major.

    Raises:
        TypeError: non-tensors or integer tensors.
        ValueError: inconsistent shapes, non-finite values, unknown activation.
    """
    kind = _activation(activation)
    Y, W_1, b_1, W_2, b_2 = (
        _tensor(t, name) for t, name in ((Y, "Y"), (W_1, "W_1"), (b_1, "b_1"), (W_2, "W_2"), (b_2, "b_2"))
    )
    if Y.ndim != 2:
        raise ValueError(f"Y must have shape (L, d), got {tuple(Y.shape)}")
    L, d = Y.shape
    if W_1.ndim != 2 or W_1.shape[0] != d:
        raise ValueError(f"W_1 must have shape ({d}, m), got {tuple(W_1.shape)}")
    m = W_1.shape[1]
    if b_1.shape != (m,):
        raise ValueError(f"b_1 must have shape ({m},), got {tuple(b_1.shape)}")
    if W_2.ndim != 2 or W_2.shape[0] != m:
        raise ValueError(f"W_2 must have shape ({m}, K), got {tuple(W_2.shape)}")
    K = W_2.shape[1]
    if b_2.shape != (K,):
        raise ValueError(f"b_2 must have shape ({K},), got {tuple(b_2.shape)}")
    G, Lam = output_curvature(G, Lam, L, K)
    h = Y @ W_1 + b_1
    a, d1, d2 = activation_derivatives(h, kind)
    eye_K, eye_m = torch.eye(K, dtype=torch.float64), torch.eye(m, dtype=torch.float64)
    # Jacobian of vec FFN (rows (t, k)) with respect to each block
    B_W1 = torch.einsum("ta,tm,mk->tkam", Y, d1, W_2).reshape(L * K, d * m)
    B_b1 = torch.einsum("tm,mk->tkm", d1, W_2).reshape(L * K, m)
    B_W2 = torch.einsum("tm,kj->tkmj", a, eye_K).reshape(L * K, m * K)
    B_b2 = eye_K.repeat(L, 1)
    B = torch.cat([B_W1, B_b1, B_W2, B_b2], dim=1)
    H_o = B.T @ Lam @ B
    u = G @ W_2.T  # (L, m): rows u_t = W_2 g_t
    c2 = u * d2  # u_tm phi''(h_tm)
    f_W1W1 = torch.einsum("ta,tb,tm,mn->ambn", Y, Y, c2, eye_m).reshape(d * m, d * m)
    f_W1b1 = torch.einsum("ta,tm,mn->amn", Y, c2, eye_m).reshape(d * m, m)
    f_b1b1 = torch.diag(c2.sum(0))
    f_W1W2 = torch.einsum("tk,tm,ta,mn->amnk", G, d1, Y, eye_m).reshape(d * m, m * K)
    f_b1W2 = torch.einsum("tk,tm,mn->mnk", G, d1, eye_m).reshape(m, m * K)
    sizes = (d * m, m, m * K, K)
    off = [0]
    for s in sizes:
        off.append(off[-1] + s)
    H_f = torch.zeros(off[-1], off[-1], dtype=torch.float64)

    def put(i: int, j: int, block: Tensor) -> None:
        H_f[off[i] : off[i + 1], off[j] : off[j + 1]] = block
        if i != j:
            H_f[off[j] : off[j + 1], off[i] : off[i + 1]] = block.T

    put(0, 0, f_W1W1)
    put(0, 1, f_W1b1)
    put(1, 1, f_b1b1)
    put(0, 2, f_W1W2)
    put(1, 2, f_b1W2)
    shapes = ((d, m), (m,), (m, K), (K,))
    H_o_m, H_f_m = BlockMatrix(H_o, NAMES, shapes), BlockMatrix(H_f, NAMES, shapes)
    return HessianSplit(H=H_o_m + H_f_m, H_o=H_o_m, H_f=H_f_m)
