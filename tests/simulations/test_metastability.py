"""python -m simulations.metastability end to end on a tiny run."""

import numpy as np

from simulations import metastability as script


def test_writes_staircases_and_figure(tmp_path):
    args = ["--betas", "2", "6", "--n", "8", "--batch", "3", "--t-max", "20", "--out", str(tmp_path)]
    path = script.main(args)
    (h5,) = tmp_path.glob("*.h5")
    assert h5 == path and h5.name.startswith("metastability_SA_d2_n8_")
    assert h5.with_suffix(".png").stat().st_size > 10_000
    data = script.load(h5)
    assert data["betas"][1] == 6.0
    counts = data["counts"][1]
    assert counts.shape == (len(data["ts"]), 3)
    # Cluster counts never exceed n and (for these starts) never increase at the end.
    assert counts.max() <= 8 and np.all(counts[-1] <= counts[0])
    assert script.run(script.make_config(script.parse_args(args)), h5) == h5  # finished: nothing to redo
