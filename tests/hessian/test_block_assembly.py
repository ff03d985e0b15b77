"""The LN2 and FFN blocks of the pre-LN block assembled from the closed forms (theory note §4.4).

Reference: the exact dense autograd Hessian of the whole one-layer transformer
(``CurvatureProblem(...).H.dense()``, float64,
tested against torch.func elsewhere). Sizes are tiny (d_model 4, 4 sequences) to keep each test ~1-2 s.
"""

import pytest
import torch
from block_problem import tiny_block_problem

from hessian import CurvatureProblem
from hessian.block_assembly import assembled_feedforward_blocks


def test_assembled_ln2_and_ffn_blocks_equal_autograd():
    """Closed forms + loss derivatives at the sub-layer outputs rebuild the transformer's exact blocks.

    Tolerance 1e-10 absolute (entries up to ~10; observed ~1e-15).
    """
    model, params, tokens, target, loss = tiny_block_problem()
    blocks = assembled_feedforward_blocks(model, params, tokens, target, loss)
    names = sorted({a for a, _ in blocks}, key=list(params).index)
    H = CurvatureProblem(model, loss, params, tokens, target, names).H.dense()
    assert len(blocks) == 16 + 4
    for (a, b), B in blocks.items():
        torch.testing.assert_close(B, H.block(a, b), rtol=0, atol=1e-10)
    assert max(float(B.abs().max()) for B in blocks.values()) > 1e-2


def test_guard():
    model = tiny_block_problem(layer_norm=False)[0]
    with pytest.raises(ValueError, match="one-layer pre-LN"):
        assembled_feedforward_blocks(model, model.init(), None, None, None)
