"""python -m simulations.phase_diagram end to end on a tiny sweep, and the study's store."""

import dataclasses

import numpy as np
import pytest

import particles
from particles.io import ResultStore
from simulations import phase_diagram as study

TINY = ["--betas", "0.5", "4", "3", "--n", "6", "--batch", "4", "--t-max", "2", "--checkpoints", "5"]
SMALL = dict(n=8, d=2, batch=16, t_max=3.0, dt=0.1, checkpoints=7)


def _in_memory(config):
    return particles.phase_diagram(config.betas, **dataclasses.asdict(config.ensemble))


def test_writes_results_and_figure_then_skips_finished_betas(tmp_path, monkeypatch):
    study.main(TINY + ["--out", str(tmp_path), "--no-progress"])
    (h5,) = tmp_path.glob("*.h5")
    assert h5.with_suffix(".png").stat().st_size > 10_000
    config = study.config_from_args(study.parse_args(TINY))
    stored = study.load(h5)
    direct = _in_memory(config)
    assert stored.ensemble == config.ensemble
    np.testing.assert_array_equal(stored.betas, config.betas)
    np.testing.assert_array_equal(stored.density, direct.density)
    np.testing.assert_array_equal(stored.clusters, direct.clusters)

    # Interrupted sweep (no figure yet): drop one beta; the rerun computes exactly that one.
    ResultStore(h5, config=config.as_dict()).delete("beta_0001")
    h5.with_suffix(".png").unlink()
    with pytest.raises(ValueError, match="2 of 3 betas"):
        study.load(h5)
    calls = []
    original = study.beta_statistics
    monkeypatch.setattr(
        study, "beta_statistics", lambda beta, ensemble, **kw: calls.append(beta) or original(beta, ensemble, **kw)
    )
    study.main(TINY + ["--out", str(tmp_path), "--no-progress"])
    assert calls == [config.betas[1]]
    np.testing.assert_array_equal(study.load(h5).density, direct.density)


def test_store_written_with_other_draw_keys_is_refused(tmp_path):
    # A store from the days when draws were keyed by position holds other numbers: a rerun
    # must refuse it rather than mix its betas with new ones.
    config = study.PhaseDiagramConfig(betas=(0.5, 2.0), ensemble=particles.ClusteringEnsemble(**SMALL))
    old = {key: value for key, value in config.as_dict().items() if key != "draw_key"}
    ResultStore(tmp_path / "old.h5", config=old)
    with pytest.raises(ValueError, match="draw_key"):
        study.run(config, tmp_path / "old.h5", progress=False)


def test_config_round_trips_through_the_file(tmp_path):
    ensemble = particles.ClusteringEnsemble(regen_period=0.5, interaction="goe", draw="beta", **SMALL)
    config = study.PhaseDiagramConfig(betas=(1.0, 0.5), ensemble=ensemble)
    study.run(config, tmp_path / "sweep.h5", progress=False)
    assert study.PhaseDiagramConfig.from_dict(ResultStore(tmp_path / "sweep.h5").config) == config


def test_full_flag_gives_the_authors_defaults():
    config = study.config_from_args(study.parse_args(["--full"]))
    e = config.ensemble
    assert (e.batch, e.checkpoints, len(config.betas)) == (2048, 200, 90)
    assert config.betas[0] == 0.1 and config.betas[-1] == 9.0
    assert (e.n, e.d, e.t_max, e.dt, e.dynamics) == (32, 2, 30.0, 0.1, "SA")
    quick = study.config_from_args(study.parse_args([]))
    assert quick == study.PhaseDiagramConfig()


def test_plot_returns_the_figure_with_every_setting_and_discrete_counts(tmp_path):
    ensemble = particles.ClusteringEnsemble(
        dynamics="USA", usa_step_correction=True, interaction="goe", regen_period=0.5, n=6, batch=4, t_max=1.0
    )
    config = study.PhaseDiagramConfig(betas=(0.25, 0.5), ensemble=dataclasses.replace(ensemble, checkpoints=5))
    path = tmp_path / "sweep.h5"
    study.run(config, path, progress=False)
    fig = study.plot(path, save=False)
    assert not path.with_suffix(".png").exists()
    title = fig.get_suptitle()
    for words in ("USA", "USA step correction", "redrawn every t = 0.5", "goe", "t_max = 1", "n = 6"):
        assert words in title, (words, title)
    assert "shown as 0.001" in fig.axes[1].get_title()
    bar = fig.axes[-1]  # the cluster-count colour bar: one labelled tick per count up to n
    assert [t.get_text() for t in bar.get_yticklabels()] == ["1", "2", "3", "4", "5", "6"]
