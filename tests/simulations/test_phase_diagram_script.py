"""python -m simulations.phase_diagram end to end on a tiny sweep."""

import numpy as np

import particles._phase_diagram as pd_module
from particles.io import ResultStore
from simulations import phase_diagram as script

TINY = ["--betas", "0.5", "4", "3", "--n", "6", "--batch", "4", "--t-max", "2", "--checkpoints", "5"]


def test_writes_results_and_figure_then_skips_finished_betas(tmp_path, monkeypatch):
    script.main(TINY + ["--out", str(tmp_path)])
    (h5,) = tmp_path.glob("*.h5")
    assert h5.with_suffix(".png").stat().st_size > 10_000
    config = script.config_from_args(script.parse_args(TINY))
    stored = pd_module.load_phase_diagram(h5, config)
    direct = pd_module.run_phase_diagram(config)
    np.testing.assert_array_equal(stored.density, direct.density)
    np.testing.assert_array_equal(stored.clusters, direct.clusters)

    # Interrupted sweep: drop one beta; the rerun computes exactly that one.
    ResultStore(h5, config=config.as_dict()).delete("beta_0001")
    calls = []
    original = pd_module.beta_statistics
    monkeypatch.setattr(pd_module, "beta_statistics", lambda c, k: calls.append(k) or original(c, k))
    script.main(TINY + ["--out", str(tmp_path)])
    assert calls == [1]
    np.testing.assert_array_equal(pd_module.load_phase_diagram(h5, config).density, direct.density)


def test_full_flag_gives_the_authors_defaults():
    config = script.config_from_args(script.parse_args(["--full"]))
    assert (config.batch, config.checkpoints, len(config.betas)) == (2048, 200, 90)
    assert config.betas[0] == 0.1 and config.betas[-1] == 9.0
    assert (config.n, config.d, config.t_max, config.dt, config.dynamics) == (32, 2, 30.0, 0.1, "SA")
