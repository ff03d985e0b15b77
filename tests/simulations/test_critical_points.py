"""python -m simulations.critical_points end to end on a tiny run."""

import numpy as np
import pytest

from particles.critical_points import (
    KINDS,
    classify_critical_point,
    polygon_configuration,
)
from simulations import critical_points as script

ARGS = [
    "--betas",
    "0",
    "2",
    "3",
    "4",
    "5",
    "6",
    "--tokens-per-vertex",
    "2",
    "--fit-beta-min",
    "2",
    "--prepared-ks",
    "3",
    "4",
    "--prepared-n",
    "12",
    "--prepared-betas",
    "3",
    "4",
    "--sim-betas",
    "6",
    "--n",
    "8",
    "--batch",
    "2",
    "--t-max",
    "12",
    "--dt",
    "0.2",
    "--save-every",
    "2",
]


# dt = 0.2 at beta = 6 (for speed) is past Euler's stability limit for SA: it warns.
@pytest.mark.filterwarnings("ignore::particles.StepSizeWarning")
def test_writes_results_and_figure(tmp_path):
    args = ARGS + ["--out", str(tmp_path)]
    path = script.main(args)
    assert path.with_suffix(".png").stat().st_size > 10_000
    assert path.name.startswith("critical_points_SA_d2_n8_")
    data = script.load(path)
    labels = [c[0] for c in script.CONFIGURATIONS]
    # Two antipodal clusters: ascent ratio 2 / (e^{2 beta} - 1) in closed form.
    pair = data["configurations"][labels.index("2 clusters")]
    np.testing.assert_allclose(pair["ratio"][1:], 2 / np.expm1(2 * pair["betas"][1:]), rtol=1e-9)
    fits = data["eigen_fits"]
    np.testing.assert_allclose(fits[labels.index("2 clusters"), 1], -2.0, atol=0.01)
    # A stored classification equals a direct recomputation.
    tri = data["configurations"][labels.index("3 clusters")]
    direct = classify_critical_point(polygon_configuration(3, 2), 4.0, tol=1e-8)
    i = list(tri["betas"]).index(4.0)
    np.testing.assert_allclose(tri["eigenvalues"][i], direct.eigenvalues, rtol=1e-12)
    assert KINDS[tri["kind"][i]] == direct.kind == "strict saddle"
    single = data["configurations"][labels.index("single cluster")]
    assert all(KINDS[k] == "maximum" for k in single["kind"])
    prepared = data["prepared"][0]
    assert prepared["k"].tolist() == [3, 4] and np.all(prepared["end"] > prepared["start"])
    plateaus = data["plateaus"][0]
    assert plateaus["beta"] == 6.0 and np.all(plateaus["clusters"] >= 2)
    with pytest.raises(ValueError, match="prepared_ks must be >= 2"):
        script.make_config(script.parse_args(["--prepared-ks", "7", "--prepared-n", "12"]))
