"""LayerNorm in closed form: Jacobian, Hessian, loss-Hessian blocks of (input, gain, bias), chain rule.

Theory note §4.2 and §4.4 (after Petrov, Kiselev, Meshkov & Grabovoy, 2025). For one token x (n,),
``P = I - 1 1^T / n``, ``c = P x``, ``s = sqrt(|c|^2 / n + eps)``, ``z = c / s`` and
``LN(x) = w * z + b`` (gain w, bias b, the ``Transformer``'s ``ln.w``, ``ln.b``):

    dz/dx = (P - z z^T / n) / s,
    d^2 z_k / dx_i dx_j = -(1 / (n s^2)) [P_ik z_j + P_jk z_i + P_ij z_k - 3 z_i z_j z_k / n].

LN acts row by row on X (L, n), so its derivatives have no cross-token entries; it is linear in (w, b)
jointly, so the only second derivatives involving the parameters are ``d^2 LN_k / dw_m dx_i = delta_km dz_k/dx_i``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..block_matrix import BlockMatrix
from ..checks import check_finite
from ..dense import HessianSplit

#: block names of ``layer_norm_blocks``: the input X and the gain and bias (``ln.w``, ``ln.b``)
NAMES = ("X", "w", "b")


def _tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    check_finite(name, x)
    return x.to(torch.float64)


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite float >= 0, got {eps!r}")
    return float(eps)


def _normalise(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(P (n, n), z (..., n), s (...,)) for tokens x (..., n)."""
    n = x.shape[-1]
    if n < 2:
        raise ValueError(
            "x must have at least 2 features on its last axis (LayerNorm of 1 feature is constant), got shape "
            f"{tuple(x.shape)}"
        )
    c = x - x.mean(-1, keepdim=True)
    s = torch.sqrt((c * c).mean(-1) + eps)
    if bool((s == 0).any()):
        raise ValueError("x has a constant token and eps = 0: LayerNorm is not differentiable there; use eps > 0")
    P = torch.eye(n, dtype=x.dtype) - 1.0 / n
    return P, c / s[..., None], s


def _gain(weight: Tensor | None, n: int) -> Tensor:
    if weight is None:
        return torch.ones(n, dtype=torch.float64)
    weight = _tensor(weight, "weight")
    if weight.shape != (n,):
        raise ValueError(f"weight must have shape ({n},) to match the last axis of x, got {tuple(weight.shape)}")
    return weight


def layer_norm_jacobian(x: Tensor, *, weight: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Per-token Jacobian ``dLN(x)/dx = diag(w) (P - z z^T / n) / s``.

    Args:
        x: (..., n) tokens (LayerNorm over the last axis).
        weight: (n,) gain w, or None for w = 1.
        eps: variance offset (>= 0).

    Returns:
        (..., n, n) with entry [k, i] = d LN_k / d x_i (float64).

    Raises:
        TypeError: non-tensor or integer input. ValueError: shapes, non-finite values, eps < 0.

    Example:
        >>> J = layer_norm_jacobian(torch.randn(5, dtype=torch.float64))
        >>> bool(torch.allclose(J.sum(-1), torch.zeros(5, dtype=torch.float64), atol=1e-12))  # J 1 = 0
        True
    """
    x = _tensor(x, "x")
    eps = _check_eps(eps)
    P, z, s = _normalise(x, eps)
    n = x.shape[-1]
    w = _gain(weight, n)
    Jz = (P - z[..., :, None] * z[..., None, :] / n) / s[..., None, None]
    return w[:, None] * Jz


def layer_norm_hessian(x: Tensor, *, weight: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Per-token Hessian ``d^2 LN_k / dx_i dx_j = -w_k / (n s^2) [P_ik z_j + P_jk z_i + P_ij z_k - 3 z_i z_j z_k / n]``.

    Args:
        x: (..., n) tokens.
        weight: (n,) gain w, or None for w = 1.
        eps: variance offset (>= 0).

    Returns:
        (..., n, n, n) with entry [k, i, j]; symmetric in (i, j), and in all three indices when w = 1.

    Raises:
        TypeError, ValueError: as ``layer_norm_jacobian``.
    """
    x = _tensor(x, "x")
    eps = _check_eps(eps)
    P, z, s = _normalise(x, eps)
    n = x.shape[-1]
    w = _gain(weight, n)
    zi = z[..., None, :, None]  # index i
    zj = z[..., None, None, :]  # index j
    zk = z[..., :, None, None]  # index k
    # P is symmetric: P_ik = P[k, i] broadcast over j, P_jk = P[k, j] broadcast over i
    bracket = P[:, :, None] * zj + P[:, None, :] * zi + P[None, :, :] * zk - 3 * zi * zj * zk / n
    return -(w[:, None, None] / n) * bracket / (s**2)[..., None, None, None]


def compose_layer_norm(
    x: Tensor, dx: Tensor, d2x: Tensor, *, weight: Tensor | None = None, eps: float = 1e-5
) -> tuple[Tensor, Tensor]:
    """First and second derivatives of ``Z(w) = LN(S(w))`` by the second-order chain rule (theory note §4.4).

    ``d^2 Z / dw_p dw_q = J_LN(S) d^2 S / dw_p dw_q + H_LN(S)[dS/dw_p, dS/dw_q]``, token by token.

    Args:
        x: (..., n) the pre-normalisation tokens S(w) at the point.
        dx: (..., n, P) Jacobian dS/dw.
        d2x: (..., n, P, P) second derivative d^2 S / dw^2.
        weight: (n,) gain, or None.
        eps: variance offset.

    Returns:
        (dZ (..., n, P), d2Z (..., n, P, P)).

    Raises:
        ValueError: shapes that do not match x.
    """
    x = _tensor(x, "x")
    dx, d2x = _tensor(dx, "dx"), _tensor(d2x, "d2x")
    if dx.ndim != x.ndim + 1 or dx.shape[:-1] != x.shape:
        raise ValueError(f"dx must have shape {tuple(x.shape)} + (P,), got {tuple(dx.shape)}")
    Pdim = dx.shape[-1]
    if d2x.shape != x.shape + (Pdim, Pdim):
        raise ValueError(f"d2x must have shape {tuple(x.shape) + (Pdim, Pdim)}, got {tuple(d2x.shape)}")
    J = layer_norm_jacobian(x, weight=weight, eps=eps)
    H = layer_norm_hessian(x, weight=weight, eps=eps)
    dZ = J @ dx
    d2Z = torch.einsum("...ki,...ipq->...kpq", J, d2x) + torch.einsum("...kij,...ip,...jq->...kpq", H, dx, dx)
    return dZ, d2Z


def output_curvature(G: object, Lam: object, L: int, K: int) -> tuple[Tensor, Tensor]:
    """Check the loss derivatives at an output (L, K): gradient G (L, K), Hessian Lam (L, K, K) or (L, K, L, K).

    A per-row Hessian (L, K, K) (losses that are sums over tokens: MSE, cross-entropy) is expanded to the
    token-block-diagonal (L K, L K) matrix; a full (L, K, L, K) Hessian (any loss) is reshaped.

    Returns:
        (G (L, K), Lam (L K, L K)) in float64.
    """
    G, Lam = _tensor(G, "G"), _tensor(Lam, "Lam")
    if G.shape != (L, K):
        raise ValueError(f"G (loss gradient at the output) must have shape ({L}, {K}), got {tuple(G.shape)}")
    if Lam.shape == (L, K, K):
        full = torch.zeros(L, K, L, K, dtype=torch.float64)
        idx = torch.arange(L)
        full[idx, :, idx, :] = Lam
        Lam = full
    elif Lam.shape != (L, K, L, K):
        raise ValueError(
            f"Lam (loss Hessian at the output) must have shape ({L}, {K}, {K}) or ({L}, {K}, {L}, {K}), got "
            f"{tuple(Lam.shape)}"
        )
    Lam = Lam.reshape(L * K, L * K)
    if not torch.allclose(Lam, Lam.T, rtol=1e-10, atol=1e-12 * float(Lam.abs().max().clamp_min(1.0))):
        raise ValueError("Lam must be symmetric (a Hessian)")
    return G, Lam


def layer_norm_blocks(
    X: Tensor, weight: Tensor, bias: Tensor, G: Tensor, Lam: Tensor, *, eps: float = 1e-5
) -> HessianSplit:
    """Hessian of ``l(LN(X; w, b))`` over (X, w, b), split into H_o and H_f, from the output derivatives.

    With ``B`` the Jacobian of vec LN(X) (row-major, (L n, P)) and ``G = dl/dLN``, ``Lam = d^2 l / dLN^2``:

        H_o = B^T Lam B,   B_X = blockdiag_t diag(w) Jz_t,   B_w[(t, k), m] = delta_km z_tk,   B_b = 1 ⊗ I;
        H_f(X, X)[(t, i), (t', j)] = delta_tt' sum_k G_tk w_k Hz_t[k, i, j],
        H_f(w, X)[m, (t, i)] = G_tm Jz_t[m, i],   H_f(w, w) = H_f(b, b) = H_f(w, b) = H_f(b, X) = 0.

    Args:
        X: (L, n) input tokens.
        weight: (n,) gain w.
        bias: (n,) bias b (the Hessian does not depend on it; checked for shape).
        G: (L, n) loss gradient at the output LN(X).
        Lam: (L, n, n) per-token or (L, n, L, n) full loss Hessian at the output.
        eps: variance offset.

    Returns:
        ``HessianSplit`` of ``BlockMatrix`` over the blocks ``NAMES`` = ("X", "w", "b"), shapes
        (L, n), (n,), (n,): P = L n + 2 n, row-major.

    Raises:
        TypeError, ValueError: non-tensors, wrong shapes, non-finite values, eps < 0.
    """
    X = _tensor(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must have shape (L, n), got {tuple(X.shape)}")
    L, n = X.shape
    w = _gain(weight, n)
    b = _tensor(bias, "bias")
    if b.shape != (n,):
        raise ValueError(f"bias must have shape ({n},), got {tuple(b.shape)}")
    G, Lam = output_curvature(G, Lam, L, n)
    eps = _check_eps(eps)
    P, z, s = _normalise(X, eps)
    Jz = layer_norm_jacobian(X, eps=eps)  # (L, n, n), gain 1
    Hz = layer_norm_hessian(X, eps=eps)  # (L, n, n, n), gain 1
    eye_L, eye_n = torch.eye(L, dtype=torch.float64), torch.eye(n, dtype=torch.float64)
    B_X = torch.einsum("ts,k,tki->tksi", eye_L, w, Jz).reshape(L * n, L * n)
    B_w = torch.einsum("tk,km->tkm", z, eye_n).reshape(L * n, n)
    B_b = eye_n.repeat(L, 1)
    B = torch.cat([B_X, B_w, B_b], dim=1)
    H_o = B.T @ Lam @ B
    Pdim = L * n + 2 * n
    H_f = torch.zeros(Pdim, Pdim, dtype=torch.float64)
    H_f[: L * n, : L * n] = torch.einsum("ts,tk,k,tkij->tisj", eye_L, G, w, Hz).reshape(L * n, L * n)
    mixed = torch.einsum("tm,tmi->mti", G, Jz).reshape(n, L * n)  # H_f(w, X)
    H_f[L * n : L * n + n, : L * n] = mixed
    H_f[: L * n, L * n : L * n + n] = mixed.T
    shapes = ((L, n), (n,), (n,))
    H_o_m, H_f_m = BlockMatrix(H_o, NAMES, shapes), BlockMatrix(H_f, NAMES, shapes)
    return HessianSplit(H=H_o_m + H_f_m, H_o=H_o_m, H_f=H_f_m)
