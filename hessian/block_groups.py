"""Parameter groups of a Transformer block and the Frobenius norms of their Hessian blocks.

A block ``LN1 -> attention -> residual -> LN2 -> FFN -> residual`` of a ``Transformer`` has the groups
Q, K, V, O (attention weights), LN1, LN2 (gain and bias), W1, b1, W2, b2 (``mlp.W_in``, ``b_in``,
``W_out``, ``b_out``) (theory note §3, §4). ``block_hessian`` gives the exact H, H_o, H_f (dense autograd,
float64) over every group of a block, ``group_norm_map`` the norm of every group-pair block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

from .block_matrix import BlockMatrix
from .dense import HessianSplit, hessian_split
from .models import Transformer

#: parameter groups of one block, in forward order
GROUPS = ("Q", "K", "V", "O", "LN1", "LN2", "W1", "b1", "W2", "b2")
_MEMBERS = {
    "Q": ("attn.W_Q",),
    "K": ("attn.W_K",),
    "V": ("attn.W_V",),
    "O": ("attn.W_O",),
    "LN1": ("ln1.w", "ln1.b"),
    "LN2": ("ln2.w", "ln2.b"),
    "W1": ("mlp.W_in",),
    "b1": ("mlp.b_in",),
    "W2": ("mlp.W_out",),
    "b2": ("mlp.b_out",),
}


def block_groups(model: Transformer, layer: int = 0) -> dict[str, tuple[str, ...]]:
    """Parameter names of each group of block ``layer`` (LN groups only with ``layer_norm``).

    Attention biases are left out, as in the reference heatmap (theory note §3.7).

    Args:
        model: the transformer (not ``attn_only``).
        layer: block index.

    Returns:
        dict group -> tuple of parameter names, in the order of ``GROUPS``.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a hessian.Transformer, got {type(model).__name__}")
    if model.attn_only:
        raise ValueError("model must have an MLP (attn_only=False) for the FFN groups")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < model.n_layers:
        raise ValueError(f"layer must be an int in [0, {model.n_layers}), got {layer!r}")
    out = {}
    for g in GROUPS:
        if g.startswith("LN") and not model.layer_norm:
            continue
        out[g] = tuple(f"blocks.{layer}.{m}" for m in _MEMBERS[g])
    return out


def group_norm_map(H: BlockMatrix, groups: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Frobenius norms ``||H[g, g']||_F`` of every pair of parameter groups.

    Args:
        H: block matrix whose names include every member of ``groups``.
        groups: dict group -> parameter names (a group may span several parameters).

    Returns:
        (G, G) symmetric array (G = number of groups), in the order of ``groups``.
    """
    names = list(groups)
    G = len(names)
    sq = {(a, b): float((H.block(a, b) ** 2).sum()) for a in H.names for b in H.names}
    out = np.zeros((G, G))
    for i, gi in enumerate(names):
        for j, gj in enumerate(names):
            out[i, j] = math.sqrt(sum(sq[(a, b)] for a in groups[gi] for b in groups[gj]))
    return out


def split_maps(split: HessianSplit, groups: Mapping[str, Sequence[str]]) -> np.ndarray:
    """(3, G, G) group norm maps of H, H_o, H_f (the order of ``hessian.kinds.KINDS``)."""
    return np.stack([group_norm_map(M, groups) for M in (split.H, split.H_o, split.H_f)])


def block_hessian(
    model: Transformer, params: Mapping[str, Tensor], tokens: Tensor, target: Tensor, loss, *, layer: int = 0
) -> tuple[HessianSplit, dict[str, tuple[str, ...]]]:
    """Exact H, H_o, H_f (float64, dense autograd) over every parameter group of block ``layer``.

    Returns:
        (HessianSplit over the flattened group members, groups).
    """
    groups = block_groups(model, layer)
    names = [n for members in groups.values() for n in members]
    return hessian_split(model, loss, params, tokens, target, names), groups
