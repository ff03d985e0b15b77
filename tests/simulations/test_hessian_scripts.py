"""The two Hessian command lines end to end on tiny sizes: HDF5, PNG and slope table next to each other."""

import json

import numpy as np

from hessian.experiments.results import load_growth
from simulations import hessian_growth, hessian_heterogeneity


def test_growth_cli_linear_attention(tmp_path):
    # linear attention defaults to MSE, residual 0 and the log_short grid (the paper's runs); with rescaled
    # embeddings the exact exponent is 6 (theory note §2.5), recovered to 1e-6 by the saved table
    path = hessian_growth.main(
        [
            "--attention",
            "linear",
            "--d-model",
            "4",
            "--repeats",
            "2",
            "--num-sigmas",
            "4",
            "--batch",
            "4",
            "--embedding",
            "rescaled",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    res = load_growth(path)
    assert (
        res.complete
        and res.config.loss == "mse"
        and res.config.residual_scaling == 0.0
        and res.config.grid == "log_short"
    )
    assert path.with_suffix(".png").exists()
    rows = json.loads(path.with_name(path.stem + "_slopes.json").read_text())
    for row in rows:
        if row["kind"] != "H_f":
            assert abs(row["slope"] - 6) < 1e-6
    assert "theory" in path.with_name(path.stem + "_slopes.txt").read_text()


def test_growth_cli_mlp(tmp_path):
    path = hessian_growth.main(
        [
            "--model",
            "mlp",
            "--layers",
            "2",
            "--d-model",
            "4",
            "--repeats",
            "2",
            "--num-sigmas",
            "4",
            "--batch",
            "4",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    res = load_growth(path)
    assert res.norms.shape == (4, 2, 2, 1, 3) and np.all(res.norms[..., 2] == 0)


def test_heterogeneity_cli(tmp_path):
    path = hessian_heterogeneity.main(["--d-model", "4", "--batch", "4", "--out", str(tmp_path)])
    assert path.exists()
    assert path.with_name(path.stem + "_heatmap.png").exists()
    assert path.with_name(path.stem + "_histograms.png").exists()
