"""Shared fixtures for the hessian tests: a tiny attention problem in float64, seeded."""

import pytest
import torch

from hessian import MSELoss, SelfAttention


@pytest.fixture
def tiny_attention():
    """The theory note's reference sizes: L = 4, d = 3, d_K = 2, d_V = 3, weights and data ~ N(0, 1)."""
    gen = torch.Generator().manual_seed(0)
    layer = SelfAttention(d_model=3, d_k=2, d_v=3)
    params = layer.init(seed=1, std=1.0)
    X = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    Y = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    return layer, MSELoss(), params, X, Y
