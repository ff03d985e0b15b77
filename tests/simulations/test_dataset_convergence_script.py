"""simulations.dataset_convergence end to end on a tiny model: HDF5, PNG, summary; an interrupted run resumes exactly."""

import dataclasses
import json

import numpy as np

from hessian.dataset_size import KIND, load_dataset_convergence, run_dataset_convergence
from particles.io import ResultStore
from simulations import dataset_convergence


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
    res = load_dataset_convergence(path)
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
    run_dataset_convergence(config, path, progress=False)
    again = load_dataset_convergence(path)
    np.testing.assert_allclose(again.dH, res.dH, rtol=1e-13, atol=0)
    np.testing.assert_allclose(again.dL, res.dL, rtol=1e-13, atol=0)
    # a rerun of a finished file recomputes nothing
    mtime = path.stat().st_mtime_ns
    run_dataset_convergence(config, path, progress=False)
    assert path.stat().st_mtime_ns == mtime
