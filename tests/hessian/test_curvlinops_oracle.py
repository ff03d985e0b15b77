"""Cross-check against the reference library curvlinops-for-pytorch (test-only oracle).

Independent implementation of the same products: their HessianLinearOperator / GGNLinearOperator on a
module wrapper of our functional model. float64 on both sides: agreement to 1e-10 relative.
"""

import numpy as np
import torch
from curvlinops import GGNLinearOperator, HessianLinearOperator

from hessian import CrossEntropyLoss, CurvatureProblem, MSELoss, SelfAttention, Transformer
from hessian.interop import FunctionalModule, LossModule


def compare(model, loss, params, X, Y, blocks):
    module = FunctionalModule(model, params)
    theirs = [module.parameter(b) for b in blocks]
    P = sum(p.numel() for p in theirs)
    V = np.random.default_rng(0).standard_normal((P, 4))
    problem = CurvatureProblem(model, loss, params, X, Y, blocks)
    for ours, theirs_cls in ((problem.H, HessianLinearOperator), (problem.H_o, GGNLinearOperator)):
        # our own tests check determinism; skipping theirs keeps this file fast
        op = theirs_cls(module, LossModule(loss), theirs, [(X, Y)], check_deterministic=False)
        want = (op @ torch.as_tensor(V)).numpy()
        got = ours.operator() @ V
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


def test_attention_layer_mse():
    layer = SelfAttention(d_model=4, n_heads=2, output=True, causal=True, residual=1.0)
    params = layer.init(seed=0, std=1.0)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    Y = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    compare(layer, MSELoss(), params, X, Y, ["W_Q", "W_K", "W_V", "W_O"])


def test_small_transformer_cross_entropy_on_answers():
    model = Transformer(d_model=8, d_head=8, d_mlp=16, n_layers=2, layer_norm=True)
    params = model.init(seed=0)
    tokens = torch.randint(0, 12, (4, 18), generator=torch.Generator().manual_seed(1))
    loss = CrossEntropyLoss(positions=(11, 17), target_shift=1)
    compare(model, loss, params, tokens, tokens, ["blocks.0.attn.W_Q", "blocks.1.attn.W_V", "blocks.1.mlp.W_in"])
