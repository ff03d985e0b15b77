"""Frobenius norms of the diagonal Hessian blocks ``H``, ``H_o``, ``H_f`` of one weight matrix, fast.

Exact path ("Kronecker sums"). A weight ``W`` (d_in, D) that enters the loss only through the per-token
affine map ``y_t = x_t W + b`` has, by the chain rule (y is affine in W, so no second-derivative term),

    H_W = sum_t (x_t x_t^T) ⊗ C_t,     C_t = d^2 l / dy_t dy_t   (D, D),

whenever tokens do not interact downstream of ``y`` (the cross-token blocks of d^2 l / dy^2 vanish).
The same holds for ``H_o`` and ``H_f`` with ``C_t`` replaced by the Gauss-Newton part
``J_t^T Lambda_t J_t`` (J_t = d logits_t / dy_t) and the rest. Then, exactly,

    ||H_W||_F^2 = sum_{t,t'} (x_t . x_t')^2 <C_t, C_t'>_F,

a Gram matrix of n tokens instead of a (d_in D)^2 matrix. Cases where this holds:

* W_Q of the last attention layer: ``q_t = x_t W_Q + b_Q`` and query t only affects the logits of token t;
* W_V of the last attention layer through ``z_t = sum_j A_tj (x_j W_V + b_V) = m_t W_V + b_V``,
  ``m_t = sum_j A_tj x_j`` (A does not depend on W_V), and z_t only affects token t;
* every layer of the per-token linear MLP.

Every C_t is obtained with D batched products: because the loss is a sum of per-token terms, one
Hessian-vector product with the same unit vector e_c placed at every token returns column c of every C_t.

Other blocks (attention layers below the last one, whose output is mixed across tokens by later layers)
use Hutch++ for the squared Frobenius norm with probes shared by H and H_o (``hutchpp_split_norms``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.func import grad, jvp, vjp, vmap

from .models import LinearMLP, Transformer
from .models.attention import apply_attention, attention_pattern
from .models.transformer import layer_norm


@dataclass(frozen=True)
class SplitNorms:
    """Frobenius norms of one block of H, H_o and H_f with their standard errors (0 when exact).

    Attributes:
        value: (3,) norms in the order of ``hessian.kinds.KINDS`` = (H, H_o, H_f).
        stderr: (3,) standard errors of the norms.
        num_products: curvature products used (Hessian or Gauss-Newton vector products, per vector).
    """

    value: np.ndarray
    stderr: np.ndarray
    num_products: int


# ---------------------------------------------------------------------------------------------------------
# Kronecker sums: sum_t x_t x_t^T ⊗ C_t


def kron_sum_squared_frobenius(X: Tensor, C: Tensor) -> Tensor:
    """``|| sum_t (x_t x_t^T) ⊗ C_t ||_F^2 = sum_{t,t'} (x_t . x_t')^2 <C_t, C_t'>_F``.

    Args:
        X: (n, d) token vectors x_t.
        C: (n, D, D) matrices C_t (symmetric or not).

    Returns:
        0-dim tensor, the squared Frobenius norm of the (d D, d D) matrix, never formed.
    """
    Gx = X @ X.T
    Cf = C.reshape(C.shape[0], -1)
    return ((Gx * Gx) * (Cf @ Cf.T)).sum()


def kron_sum_matrix(X: Tensor, C: Tensor) -> Tensor:
    """Dense ``sum_t (x_t x_t^T) ⊗ C_t`` in row-major vec order (index a * D + c); for tests on tiny sizes."""
    n, d = X.shape
    D = C.shape[-1]
    return torch.einsum("ta,tb,tce->acbe", X, X, C).reshape(d * D, d * D)


def token_jacobians(logits_fn: Callable[[Tensor], Tensor], y0: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token Jacobians ``J_t = d logits_t / d y_t`` by K reverse-mode products.

    Requires that token t of ``y`` (last axis: features) affects only token t of the logits, so a
    cotangent e_k placed at every token returns row k of every J_t at once.

    Args:
        logits_fn: (..., D) -> (..., K), same leading shape.
        y0: (..., D) point of evaluation.

    Returns:
        (logits (..., K), J (n, K, D)) with n = prod of the leading shape, tokens in row-major order.
    """
    logits, pullback = vjp(logits_fn, y0)
    K, D = logits.shape[-1], y0.shape[-1]
    rows = vmap(lambda e: pullback(e.expand(logits.shape))[0])(torch.eye(K, dtype=logits.dtype))  # (K, ..., D)
    return logits, rows.reshape(K, -1, D).transpose(0, 1)


def token_loss_curvature(loss_fn: Callable[[Tensor], Tensor], logits: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient (n, K) and per-token Hessian Lambda_t (n, K, K) of a loss that is a sum over tokens."""
    K = logits.shape[-1]
    g, pullback = vjp(grad(loss_fn), logits)
    Lam = vmap(lambda e: pullback(e.expand(logits.shape))[0])(torch.eye(K, dtype=logits.dtype))
    return g.reshape(-1, K), Lam.reshape(K, -1, K).transpose(0, 1)


def token_hessians(fn: Callable[[Tensor], Tensor], y0: Tensor, chunk_size: int | None = 16) -> Tensor:
    """Per-token Hessians (n, D, D) of a scalar ``fn`` that is a sum of per-token terms, by D batched products."""
    D = y0.shape[-1]
    _, pullback = vjp(grad(fn), y0)
    cols = vmap(lambda e: pullback(e.expand(y0.shape))[0], chunk_size=chunk_size)(torch.eye(D, dtype=y0.dtype))
    return cols.reshape(D, -1, D).permute(1, 2, 0)


def token_curvatures(
    logits_fn: Callable[[Tensor], Tensor], loss_fn: Callable[[Tensor], Tensor], y0: Tensor, *, piecewise_linear: bool
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Per-token Hessian C_t and Gauss-Newton matrix C^o_t of ``l(y) = loss_fn(logits_fn(y))`` at ``y0``.

    ``C^o_t = J_t^T Lambda_t J_t``. When ``logits_fn`` is piecewise linear (ReLU MLP without LayerNorm,
    linear MLP), ``C_t - C^o_t = sum_k g_k d^2 logits_k / dy_t^2 = 0`` almost everywhere, so C = C^o costs
    K products; otherwise C needs D Hessian-vector products.

    Args:
        logits_fn: (..., D) -> (..., K), token t of y affecting only token t of the logits.
        loss_fn: (..., K) -> scalar, a sum over tokens.
        y0: (..., D) point of evaluation.
        piecewise_linear: whether ``logits_fn`` is piecewise linear.

    Returns:
        (C (n, D, D), C_o (n, D, D), g (n, D) the gradient dl/dy_t, number of products used).
    """
    logits, J = token_jacobians(logits_fn, y0)
    g_logits, Lam = token_loss_curvature(loss_fn, logits)
    C_o = J.transpose(1, 2) @ Lam @ J
    g = (J.transpose(1, 2) @ g_logits[..., None])[..., 0]
    K, D = logits.shape[-1], y0.shape[-1]
    if piecewise_linear:
        return C_o, C_o, g, K
    return token_hessians(lambda y: loss_fn(logits_fn(y)), y0), C_o, g, K + D


def kron_split_norms(X: Tensor, C: Tensor, C_o: Tensor, num_products: int) -> SplitNorms:
    """Exact norms of ``sum_t x_t x_t^T ⊗ C_t`` for C (H), C_o (H_o) and C - C_o (H_f)."""
    if C is C_o:  # piecewise-linear downstream: H = H_o and H_f = 0 exactly, one Gram matrix
        sq = float(kron_sum_squared_frobenius(X, C))
        values = [sq, sq, 0.0]
    else:
        values = [float(kron_sum_squared_frobenius(X, M)) for M in (C, C_o, C - C_o)]
    norms = np.sqrt(np.maximum(values, 0.0))
    return SplitNorms(norms, np.zeros(3), num_products)


# ---------------------------------------------------------------------------------------------------------
# the reference models, with the perturbations ("taps") the exact path differentiates


def _block(model: Transformer, params: Mapping[str, Tensor], resid: Tensor, l: int) -> Tensor:
    """Block ``l`` on every token: the same operations as ``Transformer.__call__``."""
    p = f"blocks.{l}."
    h = layer_norm(resid, params[p + "ln1.w"], params[p + "ln1.b"], model.ln_eps) if model.layer_norm else resid
    resid = model.residual_scaling * resid + apply_attention(model.attn, params, h, prefix=p + "attn.")
    return _mlp(model, params, resid, l)


def _mlp(model: Transformer, params: Mapping[str, Tensor], resid: Tensor, l: int) -> Tensor:
    if model.attn_only:
        return resid
    p = f"blocks.{l}."
    h = layer_norm(resid, params[p + "ln2.w"], params[p + "ln2.b"], model.ln_eps) if model.layer_norm else resid
    return (
        resid
        + torch.relu(h @ params[p + "mlp.W_in"] + params[p + "mlp.b_in"]) @ params[p + "mlp.W_out"]
        + params[p + "mlp.b_out"]
    )


@dataclass(frozen=True)
class LastLayerTaps:
    """The last attention layer of a transformer, opened up for the exact path.

    Attributes:
        x: (N, R, d) attention input of the R read-out query tokens (after ln1 under pre-LN).
        m: (N, R, d) attention-weighted inputs ``m_t = sum_j A_tj x_j`` (dz_t / dW_V = m_t ⊗ I).
        keys: (N, T, d_head) keys of every sequence.
        beta: score scale.
        scores: (N, R, T) scores of the read-out queries.
        attend: scores (N, R, T) -> z = A V (N, R, d_head).
        after_attention: z (N, R, d_head) -> (N, R, d_vocab) logits.
    """

    x: Tensor
    m: Tensor
    keys: Tensor
    beta: float
    scores: Tensor
    attend: Callable[[Tensor], Tensor]
    after_attention: Callable[[Tensor], Tensor]


def last_layer_taps(model: Transformer, params: Mapping[str, Tensor], tokens: Tensor) -> LastLayerTaps:
    """Forward pass of ``model`` (which must have a ``readout`` and one head), split at the last attention.

    Args:
        model: transformer with ``readout=(start, stop)`` and ``n_heads == 1``.
        params: its parameters.
        tokens: (N, T) integer tokens.

    Returns:
        LastLayerTaps; ``after_attention(attend(scores))`` equals ``model(params, tokens)``.
    """
    if model.readout is None or model.n_heads != 1:
        raise ValueError(
            "the exact path needs a transformer with a readout and one head, "
            f"got readout={model.readout}, n_heads={model.n_heads}"
        )
    start, stop = model.readout
    tokens = tokens[..., :stop]  # causal attention: later tokens cannot reach the read-out logits
    T = tokens.shape[-1]
    resid = params["embed.W_E"][tokens] + params["pos_embed.W_pos"][:T]
    for l in range(model.n_layers - 1):
        resid = _block(model, params, resid, l)
    l = model.n_layers - 1
    p = f"blocks.{l}."
    a = p + "attn."
    h = layer_norm(resid, params[p + "ln1.w"], params[p + "ln1.b"], model.ln_eps) if model.layer_norm else resid
    k = h @ params[a + "W_K"][0] + params[a + "b_K"][0]
    v = h @ params[a + "W_V"][0] + params[a + "b_V"][0]
    x = h[..., start:stop, :]
    beta = model.attn.scale
    scores = beta * (x @ params[a + "W_Q"][0] + params[a + "b_Q"][0]) @ k.transpose(-1, -2)

    def pattern(s: Tensor) -> Tensor:
        return attention_pattern(s, kind=model.attention, causal=True, query_offset=start)

    def after_attention(z: Tensor) -> Tensor:
        r = model.residual_scaling * resid[..., start:stop, :] + z @ params[a + "W_O"][0] + params[a + "b_O"]
        r = _mlp(model, params, r, l)
        if model.layer_norm:
            r = layer_norm(r, params["ln_final.w"], params["ln_final.b"], model.ln_eps)
        return r @ params["unembed.W_U"] + params["unembed.b_U"]

    return LastLayerTaps(
        x=x,
        m=pattern(scores) @ h,
        keys=k,
        beta=beta,
        scores=scores,
        attend=lambda s: pattern(s) @ v,
        after_attention=after_attention,
    )


def transformer_last_layer_norms(
    model: Transformer, params: Mapping[str, Tensor], tokens: Tensor, loss_fn: Callable[[Tensor], Tensor]
) -> dict[str, SplitNorms]:
    """Exact ``||.||_F`` of the W_Q and W_V blocks of H, H_o, H_f of the last attention layer.

    V: ``z_t = m_t W_V + b_V`` gives ``H_WV = sum_t m_t m_t^T ⊗ C^z_t`` with C^z_t = d^2 l / dz_t^2.
    Q: the query t enters through its scores ``s_t = beta q_t K^T`` (T of them) and
    ``z_t = zeta(s_t)``, so ``C^q_t = beta^2 K^T C^s_t K`` with, by the second-order chain rule,
    ``C^s_t = Z_t^T C^z_t Z_t + sum_f (dl/dz_t)_f d^2 zeta_f / ds_t^2`` (Z_t = dz_t / ds_t, T columns) and
    ``C^{s,o}_t = Z_t^T C^{z,o}_t Z_t`` (the softmax curvature belongs to H_f). Without LayerNorm the
    logits are piecewise linear in z (ReLU MLP), so C^z = C^{z,o} from d_vocab products.

    Args:
        model: transformer with ``readout`` and one head.
        params: parameters (float64 recommended).
        tokens: (N, T) tokens.
        loss_fn: read-out logits (N, R, K) -> scalar, a sum over tokens (mean CE, summed MSE).

    Returns:
        {"Q": SplitNorms, "V": SplitNorms}.
    """
    taps = last_layer_taps(model, params, tokens)
    N, R, d = taps.x.shape
    T = taps.scores.shape[-1]
    z0 = taps.attend(taps.scores)
    Cz, Cz_o, gz, used = token_curvatures(taps.after_attention, loss_fn, z0, piecewise_linear=not model.layer_norm)
    # dz_t / ds_t by forward mode over the T score directions (the same direction at every token)
    eye = torch.eye(T, dtype=z0.dtype)
    Z = vmap(lambda e: jvp(taps.attend, (taps.scores,), (e.expand(taps.scores.shape),))[1])(eye)  # (T, N, R, D)
    Z = Z.reshape(T, N * R, -1).permute(1, 2, 0)  # (n, D, T)
    # second-order term: Hessian in s of sum_t <g_t, zeta_t(s_t)>, per token
    gz_tokens = gz.reshape(N, R, -1)
    S2 = token_hessians(lambda s: (taps.attend(s) * gz_tokens).sum(), taps.scores, chunk_size=None)
    Cs_o = Z.transpose(1, 2) @ Cz_o @ Z
    Cs = Z.transpose(1, 2) @ Cz @ Z + S2
    K = taps.keys.repeat_interleave(R, dim=0)  # (n, T, d_head): the keys of token t's sequence
    lift = lambda C: taps.beta**2 * K.transpose(1, 2) @ C @ K  # noqa: E731
    return {
        "Q": kron_split_norms(taps.x.reshape(N * R, d), lift(Cs), lift(Cs_o), used + 2 * T),
        "V": kron_split_norms(taps.m.reshape(N * R, d), Cz, Cz_o, used),
    }


def mlp_layer_norms(
    model: LinearMLP, params: Mapping[str, Tensor], tokens: Tensor, loss_fn: Callable[[Tensor], Tensor]
) -> list[SplitNorms]:
    """Exact norms of every ``layers.{i}.W`` block of the per-token linear MLP.

    Args:
        model: LinearMLP.
        params: its parameters.
        tokens: (N, R) tokens of the scored positions only (the MLP acts per token).
        loss_fn: logits (N, R, K) -> scalar, a sum over tokens.

    Returns:
        One SplitNorms per layer.
    """
    hs = [params["embed.W_E"][tokens]]
    for i in range(model.n_layers - 1):
        hs.append(hs[-1] @ params[f"layers.{i}.W"])
    out = []
    for i in range(model.n_layers):
        y0 = hs[i] @ params[f"layers.{i}.W"]

        def logits_fn(dy: Tensor, i: int = i, y0: Tensor = y0) -> Tensor:
            h = y0 + dy
            for j in range(i + 1, model.n_layers):
                h = h @ params[f"layers.{j}.W"]
            return h

        # the network is linear: C = C_o from d_vocab products
        C, C_o, _, used = token_curvatures(logits_fn, loss_fn, y0, piecewise_linear=True)
        out.append(kron_split_norms(hs[i].reshape(-1, hs[i].shape[-1]), C, C_o, used))
    return out


# ---------------------------------------------------------------------------------------------------------
# Hutch++ for blocks without the per-token structure


def hutchpp_split_norms(
    hvp: Callable[[Tensor], Tensor],
    ggnvp: Callable[[Tensor], Tensor],
    dim: int,
    *,
    sketch: int,
    probes: int,
    seed: int,
    dtype: torch.dtype,
) -> SplitNorms:
    """Norms of H, H_o and H_f = H - H_o by Hutch++ on ``||B||_F^2 = tr(B^T B)``, one sketch for all three.

    With Q an orthonormal basis of ``[H Omega, H_o Omega]`` (Omega: ``sketch`` Gaussian columns), for each
    symmetric B in {H, H_o, H_f}: ``||B||_F^2 = ||B Q||_F^2 + ||B (I - QQ^T)||_F^2`` exactly; the first term
    is computed, the second estimated by ``mean ||B (I - QQ^T) g||^2`` over Gaussian g. A low-rank block is
    captured by the sketch, so the estimate's variance (Hutchinson: 2 ||B^T B||_F^2 per probe) collapses.

    Args:
        hvp, ggnvp: (k, dim) -> (k, dim) batched products with H and H_o.
        dim: block size P.
        sketch: Omega columns k (0: plain Hutchinson).
        probes: Hutchinson probes g (>= 2 for a standard error).
        seed: probe seed.
        dtype: probe dtype.

    Returns:
        SplitNorms with delta-method standard errors ``se(||B||^2) / (2 ||B||)``.
    """
    gen = torch.Generator().manual_seed(seed)
    used = 0
    exact = np.zeros(3)
    Q = torch.zeros(dim, 0, dtype=dtype)
    if sketch > 0:
        Omega = torch.randn(sketch, dim, generator=gen, dtype=dtype)
        Y = torch.cat([hvp(Omega), ggnvp(Omega)])
        Q = torch.linalg.qr(Y.T).Q  # (dim, 2 sketch)
        HQ, GQ = hvp(Q.T.contiguous()), ggnvp(Q.T.contiguous())
        exact = np.array([float((M * M).sum()) for M in (HQ, GQ, HQ - GQ)])
        used += 4 * sketch
    G = torch.randn(probes, dim, generator=gen, dtype=dtype)
    G = G - (G @ Q) @ Q.T
    HG, GG = hvp(G), ggnvp(G)
    used += 2 * probes
    samples = np.stack([(M * M).sum(1).numpy() for M in (HG, GG, HG - GG)])  # (3, probes)
    sq = exact + samples.mean(1)
    se_sq = samples.std(1, ddof=1) / np.sqrt(probes) if probes > 1 else np.full(3, np.nan)
    norms = np.sqrt(np.maximum(sq, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(norms > 0, se_sq / (2 * norms), 0.0)
    return SplitNorms(norms, se, used)
