"""Curvature of self-attention layers: exact Hessian blocks, Gauss-Newton split, closed forms, estimators.

Every function takes a functional model ``f(params, X)``, a loss ``loss(output, Y)``, the parameter dict,
the data and a list of block names (e.g. ``"blocks.0.attn.W_Q"``); analysis runs in float64 by default.
"""

from . import adam as adam
from . import block_assembly as block_assembly
from . import block_groups as block_groups
from . import closed_form as closed_form
from . import interop as interop
from . import per_sample as per_sample
from .block_matrix import BlockMatrix as BlockMatrix
from .conditioning import Conditioning as Conditioning
from .conditioning import ExtremeEigenvalues as ExtremeEigenvalues
from .conditioning import NegativeMass as NegativeMass
from .conditioning import condition_number as condition_number
from .conditioning import extreme_eigenvalues as extreme_eigenvalues
from .conditioning import negative_mass as negative_mass
from .dense import HessianSplit as HessianSplit
from .dense import dense_hessian as dense_hessian
from .dense import functional_hessian as functional_hessian
from .dense import gauss_newton as gauss_newton
from .dense import ggn_matrix as ggn_matrix
from .dense import hessian_matrix as hessian_matrix
from .dense import hessian_split as hessian_split
from .estimators import Estimate as Estimate
from .estimators import SpectralDensity as SpectralDensity
from .estimators import diagonal as diagonal
from .estimators import frobenius_norm as frobenius_norm
from .estimators import hutchinson_diagonal as hutchinson_diagonal
from .estimators import hutchinson_squared_frobenius as hutchinson_squared_frobenius
from .estimators import hutchinson_trace as hutchinson_trace
from .estimators import hutchpp_trace as hutchpp_trace
from .estimators import spectral_density as spectral_density
from .estimators import top_eigenvalues as top_eigenvalues
from .estimators import trace as trace
from .flow import FlowCurvature as FlowCurvature
from .flow import along_trajectory as along_trajectory
from .flow import read_curvature as read_curvature
from .flow_blocks import flow_hessian as flow_hessian
from .jacobians import BlockJacobian as BlockJacobian
from .jacobians import JacobianOperator as JacobianOperator
from .jacobians import jacobian as jacobian
from .jacobians import jacobian_operator as jacobian_operator
from .landscape import Landscape as Landscape
from .landscape import QuadraticModel as QuadraticModel
from .landscape import loss_landscape as loss_landscape
from .landscape import quadratic_model as quadratic_model
from .landscape_directions import EigenDirections as EigenDirections
from .landscape_directions import random_filter_normalized_directions as random_filter_normalized_directions
from .landscape_directions import top_eigenvector_directions as top_eigenvector_directions
from .losses import CrossEntropyLoss as CrossEntropyLoss
from .losses import MSELoss as MSELoss
from .models import AttentionKind as AttentionKind
from .models import LinearMLP as LinearMLP
from .models import SelfAttention as SelfAttention
from .models import Transformer as Transformer
from .operators import CurvatureOperator as CurvatureOperator
from .operators import functional_hessian_operator as functional_hessian_operator
from .operators import ggn_operator as ggn_operator
from .operators import hessian_operator as hessian_operator
from .per_sample import per_sample_hessians as per_sample_hessians
from .products import (
    functional_hessian_vector_product as functional_hessian_vector_product,
)
from .products import ggn_vector_product as ggn_vector_product
from .products import hessian_vector_product as hessian_vector_product
from .products import make_functional_hvp as make_functional_hvp
from .products import make_ggnvp as make_ggnvp
from .products import make_hvp as make_hvp

__all__ = [
    # models and losses
    "SelfAttention",
    "Transformer",
    "LinearMLP",
    "AttentionKind",
    "MSELoss",
    "CrossEntropyLoss",
    # exact dense curvature
    "dense_hessian",
    "gauss_newton",
    "functional_hessian",
    "hessian_split",
    "HessianSplit",
    "hessian_matrix",
    "ggn_matrix",
    "BlockMatrix",
    # matrix-free products and operators
    "hessian_vector_product",
    "ggn_vector_product",
    "functional_hessian_vector_product",
    "make_hvp",
    "make_ggnvp",
    "make_functional_hvp",
    "hessian_operator",
    "ggn_operator",
    "functional_hessian_operator",
    "CurvatureOperator",
    # Jacobians of the output (input tokens and parameter blocks)
    "jacobian",
    "BlockJacobian",
    "jacobian_operator",
    "JacobianOperator",
    # estimators
    "Estimate",
    "trace",
    "hutchinson_trace",
    "hutchpp_trace",
    "frobenius_norm",
    "hutchinson_squared_frobenius",
    "diagonal",
    "hutchinson_diagonal",
    "top_eigenvalues",
    "spectral_density",
    "SpectralDensity",
    # conditioning: both ends of the spectrum, condition number, negative spectral mass
    "extreme_eigenvalues",
    "ExtremeEigenvalues",
    "condition_number",
    "Conditioning",
    "negative_mass",
    "NegativeMass",
    # loss landscapes (Li, Xu, Taylor, Studer & Goldstein, 2018)
    "loss_landscape",
    "Landscape",
    "quadratic_model",
    "QuadraticModel",
    "top_eigenvector_directions",
    "EigenDirections",
    "random_filter_normalized_directions",
    # closed forms (Ormaniec, Dangel & Singh, 2025)
    "closed_form",
    # nn.Module wrappers for module-based libraries
    "interop",
    # curvature along the particle flow
    "along_trajectory",
    "read_curvature",
    "flow_hessian",
    "FlowCurvature",
    # the whole pre-LN block, per-sample Hessians and Adam (Petrov et al., 2025)
    "block_groups",
    "block_assembly",
    "per_sample",
    "per_sample_hessians",
    "adam",
]
