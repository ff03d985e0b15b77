"""Data dependence (theory note §2.4 table, check 4): scale X by s, read the exponent of each block.

Softmax blocks are small-s asymptotics: log2(||B(2s)|| / ||B(s)||) within 0.01 of the table. The next-order
term is O(s) relative with an instance-dependent constant (about 10 for this instance's H(Q,Q) at s = 1e-3,
i.e. a deviation of 0.011), so s = 1e-4 is used; float64 resolves norms of size s^6 = 1e-24 without trouble. Linear
attention H_o is exactly s^6-homogeneous (1e-6 at any s).
"""

import math

import pytest
import torch

from hessian.closed_form import functional_blocks, hessian_blocks, outer_product_blocks

PAIRS = {
    "QQ": ("W_Q", "W_Q"),
    "KK": ("W_K", "W_K"),
    "QK": ("W_Q", "W_K"),
    "QV": ("W_Q", "W_V"),
    "KV": ("W_K", "W_V"),
    "VV": ("W_V", "W_V"),
}
SOFTMAX = {  # pair: (H_o, H_f, H); None = identically zero
    "QQ": (6, 5, 5),
    "KK": (6, 5, 5),
    "QK": (6, 3, 3),
    "QV": (4, 3, 3),
    "KV": (4, 3, 3),
    "VV": (2, None, 2),
}
LINEAR_HF = {"QK": 3, "QV": 3, "KV": 3}  # with Y != 0; 6 when Y = 0; diagonal blocks are zero


def instance():
    g = torch.Generator().manual_seed(7)
    X = torch.randn(4, 3, generator=g, dtype=torch.float64)
    W = [torch.randn(3, k, generator=g, dtype=torch.float64) for k in (2, 2, 3)]
    Y = torch.randn(4, 3, generator=g, dtype=torch.float64)
    return X, Y, W


def exponent(fn, pair, s1, s2, X, Y, W, **kw):
    n1 = fn(s1 * X, Y, *W, **kw).block(*PAIRS[pair]).norm()
    n2 = fn(s2 * X, Y, *W, **kw).block(*PAIRS[pair]).norm()
    return math.log2(n2 / n1) / math.log2(s2 / s1)


@pytest.mark.parametrize("pair", list(SOFTMAX))
def test_softmax_exponents(pair):
    X, Y, W = instance()
    for fn, p in zip((outer_product_blocks, functional_blocks, hessian_blocks), SOFTMAX[pair]):
        if p is None:
            assert fn(1e-3 * X, Y, *W).block(*PAIRS[pair]).abs().max() == 0
        else:
            assert exponent(fn, pair, 1e-4, 2e-4, X, Y, W) == pytest.approx(p, abs=0.01)


def test_linear_attention_exponents():
    X, Y, W = instance()
    for pair in PAIRS:
        for s1 in (1e-3, 0.37):
            assert exponent(outer_product_blocks, pair, s1, 2 * s1, X, Y, W, attention="linear") == pytest.approx(
                6, abs=1e-6
            )
    zero_Y = torch.zeros_like(Y)
    for pair in PAIRS:
        if pair in LINEAR_HF:
            assert exponent(functional_blocks, pair, 1e-3, 2e-3, X, Y, W, attention="linear") == pytest.approx(
                3, abs=0.01
            )
            assert exponent(functional_blocks, pair, 0.1, 0.2, X, zero_Y, W, attention="linear") == pytest.approx(
                6, abs=1e-6
            )
        else:
            assert functional_blocks(X, Y, *W, attention="linear").block(*PAIRS[pair]).abs().max() == 0
