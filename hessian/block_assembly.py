"""The LN2 and FFN Hessian blocks of a one-layer pre-LN transformer, assembled from the closed forms.

``assembled_feedforward_blocks`` rebuilds the LN2 and FFN blocks from the closed forms of
``hessian.closed_form`` and the loss derivatives at their outputs (the second-order chain rule of theory
note §4.4): autograd only supplies those derivatives, every parameter derivative comes from the formulas.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor
from torch.func import grad, vjp, vmap

from .closed_form.feedforward import feedforward_blocks
from .closed_form.layernorm import layer_norm_blocks
from .models import Transformer
from .models.attention import apply_attention
from .models.transformer import layer_norm


def _token_derivatives(fn: Callable[[Tensor], Tensor], y0: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient (n, D) and per-token Hessians (n, D, D) of a scalar ``fn`` that is a sum over tokens of y0 (..., D).

    A Hessian-vector product with the unit vector e_c placed at every token returns column c of every
    token's Hessian at once (no cross-token terms), so D products suffice.
    """
    D = y0.shape[-1]
    g, pullback = vjp(grad(fn), y0)
    cols = vmap(lambda e: pullback(e.expand(y0.shape))[0])(torch.eye(D, dtype=y0.dtype))
    return g.reshape(-1, D), cols.reshape(D, -1, D).permute(1, 2, 0)


def assembled_feedforward_blocks(
    model: Transformer, params: Mapping[str, Tensor], tokens: Tensor, target: Tensor, loss
) -> dict[tuple[str, str], Tensor]:
    """LN2 and FFN Hessian blocks of a one-layer transformer from the closed forms (theory note §4.2-4.4).

    With ``r`` the residual after attention (read-out tokens), ``y = LN2(r)``, ``o = FFN(y)`` and the tail
    ``l(o) = loss(unembed(ln_final(r + o)))`` (per token), the FFN blocks are ``feedforward_blocks`` at the
    gradient and per-token Hessian of ``l`` in ``o``, and the LN2 gain/bias blocks are ``layer_norm_blocks``
    at the derivatives of ``l(FFN(y))`` in ``y``: the loss derivatives at each sub-layer's output are the
    only autograd input, every parameter derivative comes from the formulas.

    Args:
        model: one-layer pre-LN ``Transformer`` with a readout and one head (float64 parameters).
        params: its parameters.
        tokens: (N, T) tokens; target: loss target; loss: a per-token loss (``CrossEntropyLoss()``).

    Returns:
        dict ``(name_a, name_b) -> block`` over ``blocks.0.{ln2.w, ln2.b, mlp.W_in, mlp.b_in, mlp.W_out, mlp.b_out}``
        (LN2 x FFN cross blocks are not assembled).
    """
    if (
        not isinstance(model, Transformer)
        or model.n_layers != 1
        or not model.layer_norm
        or model.readout is None
        or model.attn_only
    ):
        raise ValueError("model must be a one-layer pre-LN Transformer with an MLP and a readout")
    p = "blocks.0."
    start, stop = model.readout
    tokens = tokens[..., :stop]
    T = tokens.shape[-1]
    params = {k: v.to(torch.float64) for k, v in params.items()}
    with torch.no_grad():
        resid = params["embed.W_E"][tokens] + params["pos_embed.W_pos"][:T]
        h = layer_norm(resid, params[p + "ln1.w"], params[p + "ln1.b"], model.ln_eps)
        r = model.residual_scaling * resid[..., start:stop, :] + apply_attention(
            model.attn, params, h, prefix=p + "attn.", query_rows=(start, stop)
        )
    W1, b1, W2, b2 = (params[p + "mlp." + n] for n in ("W_in", "b_in", "W_out", "b_out"))
    w2, bias2 = params[p + "ln2.w"], params[p + "ln2.b"]

    def tail(o: Tensor) -> Tensor:
        x = layer_norm(r + o, params["ln_final.w"], params["ln_final.b"], model.ln_eps)
        return loss(x @ params["unembed.W_U"] + params["unembed.b_U"], target)

    def ffn(y: Tensor) -> Tensor:
        return torch.relu(y @ W1 + b1) @ W2 + b2

    y = layer_norm(r, w2, bias2, model.ln_eps)
    d = r.shape[-1]
    G_o, Lam_o = _token_derivatives(tail, ffn(y))
    G_y, Lam_y = _token_derivatives(lambda v: tail(ffn(v)), y)
    ffn_split = feedforward_blocks(y.reshape(-1, d), W1, b1, W2, b2, G_o, Lam_o, activation="relu")
    ln_split = layer_norm_blocks(r.reshape(-1, d), w2, bias2, G_y, Lam_y, eps=model.ln_eps)
    out = {}
    ffn_names = dict(zip(("W_1", "b_1", "W_2", "b_2"), ("mlp.W_in", "mlp.b_in", "mlp.W_out", "mlp.b_out")))
    for a, na in ffn_names.items():
        for b, nb in ffn_names.items():
            out[(p + na, p + nb)] = ffn_split.H.block(a, b)
    for a in ("w", "b"):
        for b in ("w", "b"):
            out[(p + "ln2." + a, p + "ln2." + b)] = ln_split.H.block(a, b)
    return out
