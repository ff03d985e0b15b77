"""Self-attention layer family as a pure function ``f(params, X)`` that torch.func can transform.

Row convention of Ormaniec, Dangel & Singh (2025): tokens are the rows of ``X`` (L, d),
``T = beta * X W_Q W_K^T X^T``, ``A = softmax(T)`` row by row (or ``A = T`` for linear attention),
``F = r * X + sum_h A_h X W_V^h W_O^h``. Weights are stored per head like TransformerLens,
``W_Q`` (n_heads, d_model, d_k), so for one head ``W_Q.reshape(-1)`` is the row-major vec of the
theory note.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_float_dtype, check_int


class AttentionKind(str, enum.Enum):
    """How scores become the attention pattern."""

    SOFTMAX = "softmax"
    #: pattern = masked scores (the authors' ``linear_attention=True``: only the softmax is removed)
    LINEAR = "linear"

    @classmethod
    def parse(cls, value: object) -> "AttentionKind":
        """``value`` as an AttentionKind; a ValueError listing the kinds otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"attention must be one of {[k.value for k in cls]}, got {value!r}") from None


def attention_pattern(scores: Tensor, *, kind: AttentionKind, causal: bool, query_offset: int = 0) -> Tensor:
    """Row-wise attention pattern from scores.

    Args:
        scores: (..., L_q, L) scores ``T``; query row r is token ``query_offset + r``.
        kind: softmax or linear.
        causal: mask keys j > i.
        query_offset: position of the first query row (0 when every token is a query).

    Returns:
        (..., L_q, L) pattern ``A``.
    """
    Lq, L = scores.shape[-2:]
    if causal:
        keep = torch.ones(Lq, L, dtype=torch.bool, device=scores.device).tril(query_offset)
    if kind is AttentionKind.SOFTMAX:
        if causal:
            scores = scores.masked_fill(~keep, float("-inf"))
        return torch.softmax(scores, dim=-1)
    if causal:
        return scores * keep.to(scores.dtype)
    return scores


def multi_head_attention(
    X: Tensor,
    W_V: Tensor,
    *,
    W_Q: Tensor | None = None,
    W_K: Tensor | None = None,
    W_QK: Tensor | None = None,
    W_O: Tensor | None = None,
    b_Q: Tensor | None = None,
    b_K: Tensor | None = None,
    b_V: Tensor | None = None,
    b_O: Tensor | None = None,
    kind: AttentionKind = AttentionKind.SOFTMAX,
    causal: bool = False,
    beta: float,
    query_rows: tuple[int, int] | None = None,
) -> Tensor:
    """Attention output without the residual: ``sum_h A_h (X W_V^h + b_V^h) W_O^h + b_O``.

    Args:
        X: (..., L, d) tokens as rows.
        W_V: (H, d, d_v).
        W_Q, W_K: (H, d, d_k) each, or None when ``W_QK`` is given.
        W_QK: (H, d, d) joint query-key matrix, scores ``beta * X W_QK X^T``.
        W_O: (H, d_v, d_out) or None (then heads are concatenated: d_out = H * d_v).
        b_Q, b_K: (H, d_k); b_V: (H, d_v); b_O: (d_out,). Optional biases.
        kind: softmax or linear attention.
        causal: mask keys after the query.
        beta: score scale (1/sqrt(d_k) in the paper).
        query_rows: (start, stop) to compute the output of those tokens only (keys: all tokens).

    Returns:
        (..., L, d_out), or (..., stop - start, d_out) with ``query_rows``.
    """
    start, stop = (0, X.shape[-2]) if query_rows is None else query_rows
    Xq = X[..., start:stop, :]
    if W_QK is not None:
        scores = beta * torch.einsum("...ia,hab,...jb->...hij", Xq, W_QK, X)
    else:
        q = torch.einsum("...la,hak->...hlk", Xq, W_Q)
        k = torch.einsum("...la,hak->...hlk", X, W_K)
        if b_Q is not None:
            q = q + b_Q[:, None, :]
        if b_K is not None:
            k = k + b_K[:, None, :]
        scores = beta * (q @ k.transpose(-1, -2))
    A = attention_pattern(scores, kind=kind, causal=causal, query_offset=start)
    v = torch.einsum("...la,haf->...hlf", X, W_V)
    if b_V is not None:
        v = v + b_V[:, None, :]
    z = A @ v  # (..., H, L, d_v)
    if W_O is None:
        out = z.movedim(-3, -2).reshape(*z.shape[:-3], z.shape[-2], -1)
    else:
        out = torch.einsum("...hlf,hfo->...lo", z, W_O)
    if b_O is not None:
        out = out + b_O
    return out


@dataclass(frozen=True, kw_only=True)
class SelfAttention:
    """One self-attention layer; call it as ``layer(params, X)``.

    Parameter names: ``W_V`` (H, d_model, d_v); ``W_Q``, ``W_K`` (H, d_model, d_k) or ``W_QK``
    (H, d_model, d_model) when ``joint_qk``; ``W_O`` (H, d_v, d_model) when ``output``; with ``bias``
    also ``b_Q``, ``b_K`` (H, d_k), ``b_V`` (H, d_v), ``b_O`` (d_out,).

    Attributes:
        d_model: token dimension d.
        n_heads: number of heads H.
        d_k: query/key width per head (default d_model // n_heads).
        d_v: value width per head (default d_model // n_heads).
        attention: "softmax" or "linear".
        joint_qk: one matrix W_QK instead of W_Q, W_K.
        output: use an output matrix W_O (otherwise heads are concatenated).
        causal: causal mask.
        beta: score scale; None means 1/sqrt(d_k).
        residual: factor r of the residual connection ``r * X``; 0 turns it off.
        bias: add the TransformerLens biases b_Q, b_K, b_V, b_O.

    Example:
        >>> layer = SelfAttention(d_model=3, d_k=2, d_v=3)
        >>> params = layer.init(seed=0)
        >>> layer(params, torch.randn(4, 3, dtype=torch.float64)).shape
        torch.Size([4, 3])
    """

    d_model: int
    n_heads: int = 1
    d_k: int | None = None
    d_v: int | None = None
    attention: AttentionKind = AttentionKind.SOFTMAX
    joint_qk: bool = False
    output: bool = False
    causal: bool = False
    beta: float | None = None
    residual: float = 0.0
    bias: bool = False

    def __post_init__(self) -> None:
        check_int("d_model", self.d_model)
        check_int("n_heads", self.n_heads)
        for name in ("d_k", "d_v"):
            value = getattr(self, name)
            if value is None:
                if self.d_model % self.n_heads:
                    raise ValueError(
                        f"{name}=None needs d_model divisible by n_heads, got d_model={self.d_model}, "
                        f"n_heads={self.n_heads}"
                    )
                object.__setattr__(self, name, self.d_model // self.n_heads)
            else:
                check_int(name, value)
        object.__setattr__(self, "attention", AttentionKind.parse(self.attention))
        if self.beta is not None and not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a finite float or None, got {self.beta!r}")
        if not (isinstance(self.residual, (int, float)) and math.isfinite(self.residual)):
            raise ValueError(f"residual must be a finite float, got {self.residual!r}")
        if self.residual != 0 and self.d_out != self.d_model:
            raise ValueError(
                f"residual={self.residual} needs the output width d_out={self.d_out} to equal d_model={self.d_model}; "
                "set output=True or n_heads * d_v = d_model"
            )

    @property
    def d_out(self) -> int:
        """Output width: d_model with W_O, n_heads * d_v without."""
        return self.d_model if self.output else self.n_heads * self.d_v

    @property
    def scale(self) -> float:
        """The score scale beta (1/sqrt(d_k) unless given)."""
        return 1.0 / math.sqrt(self.d_k) if self.beta is None else float(self.beta)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the parameters, in the order used by ``init``."""
        H, d, dk, dv = self.n_heads, self.d_model, self.d_k, self.d_v
        shapes: dict[str, tuple[int, ...]] = {}
        if self.joint_qk:
            shapes["W_QK"] = (H, d, d)
        else:
            shapes["W_Q"] = (H, d, dk)
            shapes["W_K"] = (H, d, dk)
        shapes["W_V"] = (H, d, dv)
        if self.output:
            shapes["W_O"] = (H, dv, d)
        if self.bias:
            if not self.joint_qk:
                shapes["b_Q"] = (H, dk)
                shapes["b_K"] = (H, dk)
            shapes["b_V"] = (H, dv)
            shapes["b_O"] = (self.d_out,)
        return shapes

    def init(self, *, seed: int = 0, std: float | None = None, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
        """Draw weights ~ N(0, std^2) (default std = 1/sqrt(d_model)); biases are zero.

        Args:
            seed: seed of a private torch.Generator (the global RNG is untouched).
            std: weight standard deviation.
            dtype: float32 or float64.

        Returns:
            dict name -> tensor with the shapes of ``param_shapes``.
        """
        check_float_dtype("dtype", dtype)
        std = 1.0 / math.sqrt(self.d_model) if std is None else float(std)
        gen = torch.Generator().manual_seed(seed)
        params = {}
        for name, shape in self.param_shapes().items():
            if name.startswith("b_"):
                params[name] = torch.zeros(shape, dtype=dtype)
            else:
                params[name] = std * torch.randn(shape, generator=gen, dtype=dtype)
        return params

    def __call__(self, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
        """Apply the layer.

        Args:
            params: dict with the names of ``param_shapes``.
            X: (..., L, d_model) tokens as rows.

        Returns:
            (..., L, d_out).
        """
        return apply_attention(self, params, X, prefix="")


def apply_attention(
    layer: SelfAttention,
    params: Mapping[str, Tensor],
    X: Tensor,
    *,
    prefix: str,
    query_rows: tuple[int, int] | None = None,
) -> Tensor:
    """``layer`` applied with parameters looked up as ``prefix + name`` (used inside transformers).

    With ``query_rows=(start, stop)`` only the outputs of tokens start..stop-1 are computed.
    """
    if X.ndim < 2 or X.shape[-1] != layer.d_model:
        raise ValueError(f"X must have shape (..., L, d_model={layer.d_model}), got {tuple(X.shape)}")
    missing = [prefix + n for n in layer.param_shapes() if prefix + n not in params]
    if missing:
        raise ValueError(f"params is missing {missing} (has {sorted(params)})")
    for name, shape in layer.param_shapes().items():
        if tuple(params[prefix + name].shape) != shape:
            raise ValueError(
                f"params[{prefix + name!r}] must have shape {shape}, got {tuple(params[prefix + name].shape)}"
            )
    # look up only this configuration's names: extra entries in params (e.g. W_O of another layer) are ignored
    used = {n: params[prefix + n] for n in layer.param_shapes()}
    out = multi_head_attention(
        X,
        used.pop("W_V"),
        **used,
        kind=layer.attention,
        causal=layer.causal,
        beta=layer.scale,
        query_rows=query_rows,
    )
    if layer.residual != 0:
        out = layer.residual * (X if query_rows is None else X[..., query_rows[0] : query_rows[1], :]) + out
    return out
