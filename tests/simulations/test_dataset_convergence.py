"""simulations.dataset_convergence: the derived 1/k rate (binned-median slope -1 within 0.1 for k >= 10, theory
note §4.5, check 14), the config guards, and the command line end to end on a tiny model (HDF5, PNG, summary;
an interrupted run resumes exactly)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from hessian import MSELoss, SelfAttention
from hessian.per_sample import per_sample_hessians, running_differences
from particles.io import ResultStore
from simulations import dataset_convergence
from simulations.dataset_convergence import KIND, DatasetConfig, fit_rate


def test_rate_of_the_differences():
    g = torch.Generator().manual_seed(0)
    layer = SelfAttention(d_model=3, d_k=2, d_v=3)
    params = layer.init(seed=1, std=1.0)
    X = torch.randn(600, 4, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(600, 4, 3, generator=g, dtype=torch.float64)
    losses, H = per_sample_hessians(layer, MSELoss(), params, X, Y, ["W_Q", "W_V"])
    dL, dH, _, _ = running_differences(losses, H)
    # the rate: slope -1 (theory note §4.5) within 0.1, as in check 14
    steps = np.arange(600, dtype=float)
    for values in (dL, dH):
        fit = fit_rate(steps, values, k_min=10)
        assert abs(fit.slope + 1) < 0.1, fit


def test_config_guards():
    with pytest.raises(ValueError, match="groups must be comma-separated"):
        DatasetConfig(groups="Q,X")
    with pytest.raises(ValueError, match="groups must be comma-separated"):
        DatasetConfig(groups="LN1", layer_norm=False)
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        DatasetConfig(num_samples=1)
    with pytest.raises(TypeError, match="config must be a DatasetConfig"):
        dataset_convergence.run({}, "x.h5")


def test_dataset_convergence_cli(tmp_path):
    argv = [
        "--d-model",
        "4",
        "--samples",
        "120",
        "--chunk",
        "50",
        "--groups",
        "V",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    path = dataset_convergence.main(argv)
    res = dataset_convergence.load(path)
    assert np.isfinite(res.dL[1:]).all() and np.isfinite(res.dH[1:]).all() and res.H_mean.shape == (16, 16)
    for suffix in (".png", "_summary.txt", "_rates.json"):
        assert path.with_name(path.stem + suffix).exists()
    rates = json.loads(path.with_name(path.stem + "_rates.json").read_text())
    assert rates["loss"]["theory"] == -1 and np.isfinite(rates["hessian"]["slope"])
    # a run interrupted after the first chunk resumes from the saved running mean and gives the same numbers
    config = dataset_convergence.config_from_args(dataset_convergence.parse_args(argv))
    store = ResultStore(path, {"kind": KIND, **dataclasses.asdict(config)})
    store.delete("chunk=00001")
    store.delete("chunk=00002")
    dataset_convergence.run(config, path, progress=False)
    again = dataset_convergence.load(path)
    np.testing.assert_allclose(again.dH, res.dH, rtol=1e-13, atol=0)
    np.testing.assert_allclose(again.dL, res.dL, rtol=1e-13, atol=0)
    # a rerun of a finished file recomputes nothing
    mtime = path.stat().st_mtime_ns
    dataset_convergence.run(config, path, progress=False)
    assert path.stat().st_mtime_ns == mtime
