"""Functional models ``f(params, X)``: attention layer, decoder-only transformer, linear MLP."""

from .attention import AttentionKind as AttentionKind
from .attention import SelfAttention as SelfAttention
from .attention import attention_pattern as attention_pattern
from .attention import multi_head_attention as multi_head_attention
from .mlp import LinearMLP as LinearMLP
from .transformer import Transformer as Transformer
from .transformer import layer_norm as layer_norm

__all__ = [
    "AttentionKind",
    "SelfAttention",
    "Transformer",
    "LinearMLP",
    "attention_pattern",
    "multi_head_attention",
    "layer_norm",
]
