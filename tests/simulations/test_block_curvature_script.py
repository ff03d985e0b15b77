"""simulations.block_curvature end to end on tiny sizes: HDF5, two PNGs and the summary next to each other; rerun skips."""

import json

import numpy as np

from hessian.block import load_block_curvature, run_block_curvature
from simulations import block_curvature


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
    res = load_block_curvature(path)
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
    assert (
        run_block_curvature(block_curvature.config_from_args(block_curvature.parse_args(argv)), path, progress=False)
        == path
    )
    assert path.stat().st_mtime_ns == mtime
