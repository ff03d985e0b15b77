"""Parameter groups of the pre-LN block and the norms of their Hessian blocks (theory note §4.4).

References: the exact dense autograd Hessian of the whole one-layer transformer and exact identities (the group
map partitions the matrix; the block bound).
"""

import numpy as np
import pytest
import torch
from block_problem import tiny_block_problem

from hessian import BlockMatrix
from hessian.block_groups import GROUPS, block_groups, block_hessian, group_norm_map, split_maps


@pytest.fixture(scope="module")
def tiny():
    return tiny_block_problem()


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


def test_groups_and_guards():
    model = tiny_block_problem(layer_norm=False)[0]
    assert "LN1" not in block_groups(model) and block_groups(model)["W1"] == ("blocks.0.mlp.W_in",)
    with pytest.raises(TypeError, match="model must be a hessian.Transformer"):
        block_groups(object())
    with pytest.raises(ValueError, match="layer must be an int"):
        block_groups(model, layer=1)
    H = BlockMatrix(torch.eye(3, dtype=torch.float64), ("a", "b"), ((2,), (1,)))
    np.testing.assert_allclose(group_norm_map(H, {"x": ("a", "b")}), [[np.sqrt(3)]])
