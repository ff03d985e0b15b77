"""Block heterogeneity of the Transformer Hessian at initialisation (paper Fig. 1 and Fig. 4; theory note §3.7).

* Heatmap: the exact dense Hessian of the whole 1-layer transformer (d_model = d_head = 16, d_mlp 64, no
  LayerNorm, seed 1234, CE on the answer digits, one batch of 64) over W_E, W_pos, W_Q, W_K, W_V, W_O, W_in,
  b_in, W_out, b_out, W_U, b_U (3836 parameters; attention biases excluded, as in the paper).
* Histograms: the dense W_Q and W_V blocks of H (256 x 256 each) of the same model on 8 batches of 8
  sequences, for softmax attention and for linear attention (residual 1, CE).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from ..dense import dense_hessian
from ..losses import CrossEntropyLoss
from ..models import Transformer
from .addition import addition_data, answer_positions

#: parameter order of the heatmap (the authors' order; attention biases excluded)
HEATMAP_BLOCKS = (
    "embed.W_E",
    "pos_embed.W_pos",
    "blocks.0.attn.W_Q",
    "blocks.0.attn.W_K",
    "blocks.0.attn.W_V",
    "blocks.0.attn.W_O",
    "blocks.0.mlp.W_in",
    "blocks.0.mlp.b_in",
    "blocks.0.mlp.W_out",
    "blocks.0.mlp.b_out",
    "unembed.W_U",
    "unembed.b_U",
)


@dataclass(frozen=True, kw_only=True)
class HeterogeneityConfig:
    """Sizes and seeds of the heterogeneity figures.

    Attributes:
        d_model: width (d_head = d_model, one head); d_mlp: MLP width.
        seed: model seed; data_seed: data seed.
        batch: sequences for the heatmap Hessian.
        hist_batches, hist_batch: batches x sequences for the histograms.
    """

    d_model: int = 16
    d_mlp: int = 64
    seed: int = 1234
    data_seed: int = 1234
    batch: int = 64
    hist_batches: int = 8
    hist_batch: int = 8

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            minimum = 0 if f.name.endswith("seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{f.name} must be an int >= {minimum}, got {value!r}")


def _model(config: HeterogeneityConfig, attention: str) -> Transformer:
    a0, a1 = answer_positions()
    # read-out of the scored logits: the same Hessian as the full model with the position-selecting loss
    return Transformer(
        n_layers=1,
        d_model=config.d_model,
        d_head=config.d_model,
        d_mlp=config.d_mlp,
        attention=attention,
        readout=(a0 - 1, a1 - 1),
    )


def heterogeneity(config: HeterogeneityConfig, *, dtype: torch.dtype = torch.float64) -> dict:
    """Compute the heatmap Hessian and the histogram blocks.

    Returns:
        dict with ``hessian`` (P, P) tensor, ``names``, ``boundaries`` (len(names) + 1,) and
        ``blocks`` = {"softmax": {"Q": (p, p), "V": (p, p)}, "linear": {...}}.
    """
    a0, a1 = answer_positions()
    loss = CrossEntropyLoss()
    tokens = addition_data(config.batch, seed=config.data_seed)[0]
    model = _model(config, "softmax")
    params = model.init(seed=config.seed, dtype=dtype)
    H = dense_hessian(
        model, loss, params, tokens, tokens[:, a0:a1], HEATMAP_BLOCKS, dtype=dtype, max_params=8192, chunk_size=64
    )
    # 8 batches of 8 with equal sizes: the mean loss over the 64 sequences is the mean of the batch losses
    hist_tokens = addition_data(config.hist_batch, num_batches=config.hist_batches, seed=config.data_seed).reshape(
        -1, tokens.shape[-1]
    )
    blocks = {}
    for attention in ("softmax", "linear"):
        m = _model(config, attention)
        p = m.init(seed=config.seed, dtype=dtype)
        B = dense_hessian(
            m, loss, p, hist_tokens, hist_tokens[:, a0:a1], ["blocks.0.attn.W_Q", "blocks.0.attn.W_V"], dtype=dtype
        )
        blocks[attention] = {
            "Q": B.block("blocks.0.attn.W_Q", "blocks.0.attn.W_Q"),
            "V": B.block("blocks.0.attn.W_V", "blocks.0.attn.W_V"),
        }
    return dict(hessian=H.matrix, names=list(H.names), boundaries=list(H.boundaries), blocks=blocks)


def run_heterogeneity(config: HeterogeneityConfig, path: str | Path) -> Path:
    """Compute and save to HDF5, unless ``path`` already holds the results of this config."""
    from .results import has_heterogeneity, save_heterogeneity

    path = Path(path)
    if not has_heterogeneity(path, config):
        save_heterogeneity(path, config, heterogeneity(config))
    return path
