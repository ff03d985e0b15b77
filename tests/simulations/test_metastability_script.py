"""python -m simulations.metastability end to end on a tiny run."""

import numpy as np

from particles.io import ResultStore
from simulations import metastability as script


def test_writes_staircases_and_figure(tmp_path):
    args = ["--betas", "2", "6", "--n", "8", "--batch", "3", "--t-max", "20", "--out", str(tmp_path)]
    script.main(args)
    (h5,) = tmp_path.glob("*.h5")
    assert h5.with_suffix(".png").stat().st_size > 10_000
    store = ResultStore(h5, config=script.make_config(script.parse_args(args)))
    entry = store.load("beta_0001")
    assert entry["beta"] == 6.0
    assert entry["counts"].shape == (len(entry["ts"]), 3)
    # Cluster counts never exceed n and (for these starts) never increase at the end.
    assert entry["counts"].max() <= 8 and np.all(entry["counts"][-1] <= entry["counts"][0])
