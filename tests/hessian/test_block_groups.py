"""The full pre-LN block (theory note §4.4, §2.9): closed-form assembly, group maps, block bound, large-sigma rates.

References: the exact dense autograd Hessian of the whole one-layer transformer (``dense_hessian``, float64,
tested against torch.func elsewhere); exact identities; the large-sigma exponents derived in
``large_sigma_exponent``. Sizes are tiny (d_model 4, 4 sequences) to keep each test ~1-2 s.
"""

import numpy as np
import pytest
import torch

from hessian import BlockMatrix, dense_hessian
from hessian.block import (
    GROUPS,
    KINDS,
    BlockConfig,
    addition_problem,
    assembled_feedforward_blocks,
    block_groups,
    block_hessian,
    group_norm_map,
    large_sigma_exponent,
    split_maps,
)


@pytest.fixture(scope="module")
def tiny():
    config = BlockConfig(d_model=4, d_mlp=8, batch=4)
    model = config.model()
    params = model.init(seed=3)
    # move gains and biases away from their init so every LN term is exercised
    g = torch.Generator().manual_seed(7)
    for name in params:
        if ".ln" in "." + name or name.startswith("ln_final") or ".b_" in name or name.endswith(("b_in", "b_out")):
            params[name] = params[name] + 0.3 * torch.randn(params[name].shape, generator=g, dtype=torch.float64)
    tokens, target, loss = addition_problem(model, config.batch)
    return model, params, tokens, target, loss


def test_assembled_ln2_and_ffn_blocks_equal_autograd(tiny):
    """Closed forms + loss derivatives at the sub-layer outputs rebuild the transformer's exact blocks.

    Tolerance 1e-10 absolute (entries up to ~10; observed ~1e-15).
    """
    model, params, tokens, target, loss = tiny
    blocks = assembled_feedforward_blocks(model, params, tokens, target, loss)
    names = sorted({a for a, _ in blocks}, key=list(params).index)
    H = dense_hessian(model, loss, params, tokens, target, names)
    assert len(blocks) == 16 + 4
    for (a, b), B in blocks.items():
        torch.testing.assert_close(B, H.block(a, b), rtol=0, atol=1e-10)
    assert max(float(B.abs().max()) for B in blocks.values()) > 1e-2


def test_group_map_identities(tiny):
    model, params, tokens, target, loss = tiny
    split, groups = block_hessian(model, params, tokens, target, loss)
    assert tuple(groups) == GROUPS
    maps = split_maps(split, groups)
    assert maps.shape == (3, 10, 10)
    # the group map partitions the whole matrix: sum of squares equals ||H||_F^2 exactly
    for q, M in enumerate((split.H, split.H_o, split.H_f)):
        np.testing.assert_allclose((maps[q] ** 2).sum(), float((M.matrix**2).sum()), rtol=1e-12)
        np.testing.assert_allclose(maps[q], maps[q].T, rtol=1e-12)
    i = GROUPS.index("LN1")
    manual = np.sqrt(sum(float((split.H.block(a, b) ** 2).sum()) for a in groups["LN1"] for b in groups["LN1"]))
    np.testing.assert_allclose(maps[0][i, i], manual, rtol=1e-13)
    # W2 and b2 enter the block output linearly, and nothing downstream is curved in them before ln_final:
    # their diagonal H_f blocks come only from ln_final's Hessian and are non-zero under pre-LN
    assert maps[2][GROUPS.index("W2"), GROUPS.index("W2")] > 0
    # block bound ||H||_2 <= b max ||H_ij||_2 for the b x b group partition (theory note §4.4)
    H = split.H.matrix
    spans, start = [], 0
    for members in groups.values():
        size = sum(params[n].numel() for n in members)
        spans.append(slice(start, start + size))
        start += size
    worst = max(float(torch.linalg.matrix_norm(H[a, b], ord=2)) for a in spans for b in spans)
    assert float(torch.linalg.matrix_norm(H, ord=2)) <= len(spans) * worst


def test_large_sigma_exponents(tiny):
    """Rescaled embeddings at sigma = 1e3 and 2e3: log2 ratios of exact diagonal group norms equal the derived slopes.

    At sigma 1e3 the block's own output is ~1e-3 of the stream, so corrections are O(1e-3): tolerance 0.02.
    """
    model, params, tokens, target, loss = tiny
    maps = []
    for s in (1e3, 2e3):
        p = dict(params)
        for n in ("embed.W_E", "pos_embed.W_pos"):
            p[n] = s * params[n] / params[n].std()
        split, groups = block_hessian(model, p, tokens, target, loss)
        maps.append(np.diagonal(split_maps(split, groups), axis1=-2, axis2=-1))
    ratio = np.log2(maps[1] / maps[0])
    for g, group in enumerate(groups):
        for q, kind in enumerate(KINDS):
            assert abs(ratio[q, g] - large_sigma_exponent(group, kind)) < 0.02, (group, kind, ratio[q, g])


def test_groups_and_guards():
    model = BlockConfig(d_model=4, d_mlp=8, layer_norm=False).model()
    assert "LN1" not in block_groups(model) and block_groups(model)["W1"] == ("blocks.0.mlp.W_in",)
    with pytest.raises(TypeError, match="model must be a hessian.Transformer"):
        block_groups(object())
    with pytest.raises(ValueError, match="layer must be an int"):
        block_groups(model, layer=1)
    with pytest.raises(ValueError, match="embedding must be"):
        BlockConfig(embedding="other")
    with pytest.raises(ValueError, match="d_model must be"):
        BlockConfig(d_model=0)
    with pytest.raises(ValueError, match="one-layer pre-LN"):
        assembled_feedforward_blocks(model, model.init(), None, None, None)
    H = BlockMatrix(torch.eye(3, dtype=torch.float64), ("a", "b"), ((2,), (1,)))
    np.testing.assert_allclose(group_norm_map(H, {"x": ("a", "b")}), [[np.sqrt(3)]])
