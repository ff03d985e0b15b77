"""Heterogeneity data: the read-out heatmap Hessian equals the full model's, file round trip, figures, and the
command line."""

import dataclasses

import numpy as np
import pytest
import torch

from hessian import CrossEntropyLoss, CurvatureProblem, Transformer
from hessian.addition import addition_data
from simulations import hessian_heterogeneity
from simulations.hessian_heterogeneity import (
    HEATMAP_BLOCKS,
    HeterogeneityConfig,
    heatmap_hessian,
    heatmap_path,
    histogram_blocks,
    histograms_path,
    load,
    plot,
    run,
)

TINY = HeterogeneityConfig(d_model=4, d_mlp=8, batch=5, hist_batches=2, hist_batch=3)


def test_heatmap_and_blocks_equal_the_full_model_hessian():
    # reference: the full model (no read-out) with the position-selecting loss, the paper's formulation;
    # both are exact autograd Hessians, equal to rounding (rtol 1e-10)
    H = heatmap_hessian(TINY)
    full = Transformer(n_layers=1, d_model=4, d_head=4, d_mlp=8)
    params = full.init(seed=TINY.seed)
    loss = CrossEntropyLoss(positions=(11, 17), target_shift=1)
    tokens = addition_data(5, seed=TINY.data_seed)[0]
    want = CurvatureProblem(full, loss, params, tokens, tokens, HEATMAP_BLOCKS).H.dense()
    assert list(H.names) == list(HEATMAP_BLOCKS)
    assert H.boundaries[-1] == want.matrix.shape[0] == 12 * 4 + 18 * 4 + 4 * 16 + 2 * 4 * 8 + 8 + 4 + 4 * 12 + 12
    torch.testing.assert_close(H.matrix, want.matrix, rtol=1e-10, atol=1e-12)
    hist = addition_data(3, num_batches=2, seed=TINY.data_seed).reshape(6, 18)
    for attention in ("softmax", "linear"):
        m = dataclasses.replace(full, attention=attention)
        B = CurvatureProblem(m, loss, params, hist, hist, ["blocks.0.attn.W_Q", "blocks.0.attn.W_V"]).H.dense()
        blocks = histogram_blocks(TINY, attention)
        for block in ("Q", "V"):
            name = f"blocks.0.attn.W_{block}"
            torch.testing.assert_close(blocks[block], B.block(name, name), rtol=1e-10, atol=1e-12)


def test_file_round_trip_and_figures(tmp_path):
    path = run(TINY, tmp_path / "h.h5", progress=False)
    res = load(path)
    assert res["config"] == TINY and res["names"] == list(HEATMAP_BLOCKS)
    with pytest.raises(ValueError, match="config differs"):
        run(dataclasses.replace(TINY, seed=1), path, progress=False)
    # a rerun with the same config reuses the file
    mtime = path.stat().st_mtime_ns
    run(TINY, path, progress=False)
    assert path.stat().st_mtime_ns == mtime
    assert res["hessian"].shape == (res["boundaries"][-1],) * 2
    np.testing.assert_allclose(res["hessian"], res["hessian"].T, rtol=1e-6, atol=1e-7)  # float32 storage
    plot(path)
    for png in (heatmap_path(path), histograms_path(path)):
        assert png.exists() and png.stat().st_size > 10_000
    with pytest.raises(ValueError, match="not a file"):
        load(tmp_path / "missing.h5")


@pytest.mark.parametrize("field, value", [("d_model", 0), ("batch", 2.5), ("seed", -1)])
def test_config_guards(field, value):
    with pytest.raises(ValueError, match=field):
        HeterogeneityConfig(**{field: value})


def test_heterogeneity_cli(tmp_path):
    path = hessian_heterogeneity.main(["--d-model", "4", "--batch", "4", "--out", str(tmp_path)])
    assert path.exists()
    assert path.with_name(path.stem + "_heatmap.png").exists()
    assert path.with_name(path.stem + "_histograms.png").exists()
