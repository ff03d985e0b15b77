"""Closed-form Hessian blocks of single-layer self-attention (Ormaniec, Dangel & Singh, 2025; theory note §2)."""

from ._quantities import AttentionQuantities as AttentionQuantities
from ._quantities import attention_quantities as attention_quantities
from .attention import functional_blocks as functional_blocks
from .attention import hessian_blocks as hessian_blocks
from .attention import outer_product_blocks as outer_product_blocks
from .attention import t_functional_term as t_functional_term
from .attention_jacobians import attention_jacobians as attention_jacobians
from .joint_qk import joint_qk_blocks as joint_qk_blocks
from .linear_attention import linear_attention_outer_product_blocks as linear_attention_outer_product_blocks
from .uniform import uniform_attention_outer_product_blocks as uniform_attention_outer_product_blocks

__all__ = [
    # two-matrix layer W_Q, W_K, W_V (softmax or linear, optional causal mask, MSE or CE)
    "outer_product_blocks",
    "functional_blocks",
    "hessian_blocks",
    "t_functional_term",
    # Jacobians of the layer output with respect to X, W_Q, W_K, W_V
    "attention_jacobians",
    # special cases
    "linear_attention_outer_product_blocks",
    "uniform_attention_outer_product_blocks",
    "joint_qk_blocks",
    # moments
    "attention_quantities",
    "AttentionQuantities",
]

# LayerNorm and feed-forward blocks (Petrov, Kiselev, Meshkov & Grabovoy, 2025; theory note §4)
from .feedforward import Activation as Activation
from .feedforward import activation_derivatives as activation_derivatives
from .feedforward import feedforward as feedforward
from .feedforward import feedforward_blocks as feedforward_blocks
from .layernorm import compose_layer_norm as compose_layer_norm
from .layernorm import layer_norm_blocks as layer_norm_blocks
from .layernorm import layer_norm_hessian as layer_norm_hessian
from .layernorm import layer_norm_jacobian as layer_norm_jacobian

__all__ += [
    # LayerNorm (input Jacobian and Hessian, loss blocks of input, gain and bias, chain rule)
    "layer_norm_jacobian",
    "layer_norm_hessian",
    "layer_norm_blocks",
    "compose_layer_norm",
    # feed-forward block (ReLU, GELU)
    "feedforward",
    "feedforward_blocks",
    "activation_derivatives",
    "Activation",
]
