"""Decoder-only transformer of the reference experiments (theory note §3.3), as ``f(params, tokens)``.

Token + position embedding, ``n_layers`` blocks of attention and a ReLU MLP, optional pre-LayerNorm
(ln1, ln2, ln_final), unembedding. TransformerLens names and shapes, e.g. ``blocks.0.attn.W_Q``
(n_heads, d_model, d_head); the fork's ``residual_scaling`` r gives ``resid_mid = r * resid_pre + attn_out``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_float_dtype, check_int
from .attention import AttentionKind, SelfAttention, apply_attention


def layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    """LayerNorm over the last axis: ``w * (x - mean) / sqrt(var + eps) + b`` (biased variance)."""
    c = x - x.mean(-1, keepdim=True)
    return w * c / torch.sqrt((c * c).mean(-1, keepdim=True) + eps) + b


@dataclass(frozen=True, kw_only=True)
class Transformer:
    """Decoder-only transformer; call it as ``model(params, tokens)`` -> logits.

    Attributes:
        n_layers: number of blocks.
        d_model, d_head, n_heads, d_mlp, d_vocab, n_ctx: sizes (defaults: the reference config).
        layer_norm: pre-LayerNorm (ln1, ln2, ln_final with weight 1, bias 0 at init).
        attention: "softmax" or "linear" (pattern = masked scores).
        residual_scaling: r in ``resid_mid = r * resid_pre + attn_out``.
        attn_only: blocks without MLP (then r scales the block's only residual).
        init_std: weight std; None means the GPT-2 rule 0.8 / sqrt(d_model).
        ln_eps: LayerNorm epsilon.
        readout: (start, stop) to return the logits of positions start..stop-1 only (e.g. (11, 17), the
            positions the reference loss scores). Attention is causal, so later tokens are dropped and the
            last block computes queries, MLP and unembedding for those rows only: the same numbers as
            slicing the full logits, about 3x less work at the reference sizes.

    Parameters are named ``embed.W_E`` (d_vocab, d_model), ``pos_embed.W_pos`` (n_ctx, d_model),
    ``blocks.{l}.attn.{W_Q, W_K, W_V}`` (n_heads, d_model, d_head), ``blocks.{l}.attn.W_O``
    (n_heads, d_head, d_model), ``blocks.{l}.attn.{b_Q, b_K, b_V}`` (n_heads, d_head),
    ``blocks.{l}.attn.b_O`` (d_model,), ``blocks.{l}.mlp.{W_in, b_in, W_out, b_out}``,
    ``blocks.{l}.{ln1, ln2}.{w, b}``, ``ln_final.{w, b}``, ``unembed.{W_U, b_U}``.

    Example:
        >>> model = Transformer(d_model=8, d_head=8, d_mlp=16)
        >>> params = model.init(seed=0)
        >>> model(params, torch.zeros(2, 18, dtype=torch.long)).shape
        torch.Size([2, 18, 12])
    """

    n_layers: int = 1
    d_model: int = 128
    d_head: int = 128
    n_heads: int = 1
    d_mlp: int = 512
    d_vocab: int = 12
    n_ctx: int = 18
    layer_norm: bool = False
    attention: AttentionKind = AttentionKind.SOFTMAX
    residual_scaling: float = 1.0
    attn_only: bool = False
    init_std: float | None = None
    ln_eps: float = 1e-5
    readout: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "d_head", "n_heads", "d_mlp", "d_vocab", "n_ctx"):
            check_int(name, getattr(self, name))
        object.__setattr__(self, "attention", AttentionKind.parse(self.attention))
        if not math.isfinite(self.residual_scaling):
            raise ValueError(f"residual_scaling must be finite, got {self.residual_scaling}")
        if self.init_std is not None and not (self.init_std > 0 and math.isfinite(self.init_std)):
            raise ValueError(f"init_std must be a positive float or None, got {self.init_std}")
        if not self.ln_eps >= 0:
            raise ValueError(f"ln_eps must be >= 0, got {self.ln_eps}")
        if self.readout is not None:
            ok = (
                isinstance(self.readout, tuple)
                and len(self.readout) == 2
                and all(isinstance(r, int) for r in self.readout)
            )
            if not (ok and 0 <= self.readout[0] < self.readout[1] <= self.n_ctx):
                raise ValueError(
                    f"readout must be None or (start, stop) with 0 <= start < stop <= n_ctx={self.n_ctx}, got "
                    f"{self.readout!r}"
                )

    @property
    def attn(self) -> SelfAttention:
        """The attention layer of every block (residual handled by the block)."""
        return SelfAttention(
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_k=self.d_head,
            d_v=self.d_head,
            attention=self.attention,
            output=True,
            causal=True,
            bias=True,
        )

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of every parameter, in forward order."""
        d = self.d_model
        shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (self.d_vocab, d), "pos_embed.W_pos": (self.n_ctx, d)}
        for l in range(self.n_layers):
            p = f"blocks.{l}."
            if self.layer_norm:
                shapes[p + "ln1.w"] = (d,)
                shapes[p + "ln1.b"] = (d,)
            for name, shape in self.attn.param_shapes().items():
                shapes[p + "attn." + name] = shape
            if not self.attn_only:
                if self.layer_norm:
                    shapes[p + "ln2.w"] = (d,)
                    shapes[p + "ln2.b"] = (d,)
                shapes[p + "mlp.W_in"] = (d, self.d_mlp)
                shapes[p + "mlp.b_in"] = (self.d_mlp,)
                shapes[p + "mlp.W_out"] = (self.d_mlp, d)
                shapes[p + "mlp.b_out"] = (d,)
        if self.layer_norm:
            shapes["ln_final.w"] = (d,)
            shapes["ln_final.b"] = (d,)
        shapes["unembed.W_U"] = (d, self.d_vocab)
        shapes["unembed.b_U"] = (self.d_vocab,)
        return shapes

    def init(self, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
        """GPT-2 style init: every weight ~ N(0, init_std^2), biases 0, LayerNorm weights 1.

        Args:
            seed: seed of a private torch.Generator.
            dtype: float32 or float64.

        Returns:
            dict name -> tensor with the shapes of ``param_shapes``.
        """
        check_float_dtype("dtype", dtype)
        std = 0.8 / math.sqrt(self.d_model) if self.init_std is None else self.init_std
        gen = torch.Generator().manual_seed(seed)
        params = {}
        for name, shape in self.param_shapes().items():
            leaf = name.rsplit(".", 1)[1]
            if name.endswith(".w") and ".ln" in "." + name:
                params[name] = torch.ones(shape, dtype=dtype)
            elif leaf.startswith("b"):
                params[name] = torch.zeros(shape, dtype=dtype)
            else:
                params[name] = std * torch.randn(shape, generator=gen, dtype=dtype)
        return params

    def __call__(self, params: Mapping[str, Tensor], tokens: Tensor) -> Tensor:
        """Logits of a batch of token sequences.

        Args:
            params: dict with the names of ``param_shapes``.
            tokens: (..., T) integer tokens in [0, d_vocab), T <= n_ctx.

        Returns:
            (..., T, d_vocab) logits; with ``readout=(start, stop)``: (..., stop - start, d_vocab).
        """
        if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.is_complex():
            raise TypeError(f"tokens must be an integer torch.Tensor, got {getattr(tokens, 'dtype', type(tokens))}")
        if tokens.ndim < 1 or tokens.shape[-1] > self.n_ctx:
            raise ValueError(
                f"tokens must have shape (..., T) with 1 <= T <= n_ctx={self.n_ctx}, got {tuple(tokens.shape)}"
            )
        rows = None
        if self.readout is not None:
            if tokens.shape[-1] < self.readout[1]:
                raise ValueError(
                    f"readout={self.readout} needs at least {self.readout[1]} tokens, got {tokens.shape[-1]}"
                )
            # causal attention: positions >= stop cannot influence the logits we return
            tokens = tokens[..., : self.readout[1]]
            rows = self.readout
        T = tokens.shape[-1]
        resid = params["embed.W_E"][tokens] + params["pos_embed.W_pos"][:T]
        r = self.residual_scaling
        attn = self.attn
        for l in range(self.n_layers):
            p = f"blocks.{l}."
            h = layer_norm(resid, params[p + "ln1.w"], params[p + "ln1.b"], self.ln_eps) if self.layer_norm else resid
            last = rows if l == self.n_layers - 1 else None
            attn_out = apply_attention(attn, params, h, prefix=p + "attn.", query_rows=last)
            if last is not None:
                resid = resid[..., last[0] : last[1], :]
            resid = r * resid + attn_out
            if not self.attn_only:
                h = (
                    layer_norm(resid, params[p + "ln2.w"], params[p + "ln2.b"], self.ln_eps)
                    if self.layer_norm
                    else resid
                )
                hidden = torch.relu(h @ params[p + "mlp.W_in"] + params[p + "mlp.b_in"])
                resid = resid + hidden @ params[p + "mlp.W_out"] + params[p + "mlp.b_out"]
        if self.layer_norm:
            resid = layer_norm(resid, params["ln_final.w"], params["ln_final.b"], self.ln_eps)
        return resid @ params["unembed.W_U"] + params["unembed.b_U"]
