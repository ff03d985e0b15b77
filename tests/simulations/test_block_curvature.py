"""simulations.block_curvature: the derived large-sigma exponents against exact group maps, the config guards,
and the command line end to end on tiny sizes (HDF5, two PNGs and the summary next to each other; rerun skips)."""

import json

import numpy as np
import pytest

from hessian.block_groups import block_hessian, split_maps
from hessian.kinds import KINDS
from simulations import block_curvature
from simulations.block_curvature import BlockConfig, large_sigma_exponent
from tests.hessian.block_problem import tiny_block_problem


def test_large_sigma_exponents():
    """Rescaled embeddings at sigma = 1e3 and 2e3: log2 ratios of exact diagonal group norms equal the derived slopes.

    At sigma 1e3 the block's own output is ~1e-3 of the stream, so corrections are O(1e-3): tolerance 0.02.
    """
    model, params, tokens, target, loss = tiny_block_problem()
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


def test_config_guards():
    with pytest.raises(ValueError, match="embedding must be"):
        BlockConfig(embedding="other")
    with pytest.raises(ValueError, match="d_model must be"):
        BlockConfig(d_model=0)
    with pytest.raises(TypeError, match="config must be a BlockConfig"):
        block_curvature.run({}, "x.h5")


def test_block_curvature_cli(tmp_path):
    argv = [
        "--d-model",
        "4",
        "--batch",
        "4",
        "--num-sigmas",
        "3",
        "--repeats",
        "1",
        "--embedding",
        "rescaled",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    path = block_curvature.main(argv)
    res = block_curvature.load(path)
    assert res.maps.shape == (3, 1, 3, 10, 10) and np.isfinite(res.maps).all() and np.isfinite(res.init).all()
    for suffix in ("_map.png", "_growth.png", "_summary.txt", "_slopes.json"):
        assert path.with_name(path.stem + suffix).exists()
    summary = path.with_name(path.stem + "_summary.txt").read_text()
    deviation = float(summary.split("max abs deviation ")[1].split()[0])
    assert deviation < 1e-10
    rows = json.loads(path.with_name(path.stem + "_slopes.json").read_text())
    assert len(rows) == 30
    # a rerun finds every point done and recomputes nothing
    mtime = path.stat().st_mtime_ns
    config = block_curvature.config_from_args(block_curvature.parse_args(argv))
    assert block_curvature.run(config, path, progress=False) == path
    assert path.stat().st_mtime_ns == mtime
