"""simulations.mean_field: the study end to end on a tiny problem (run, resume, load, plot,
main), and the particle-to-PDE distance decreasing with n."""

import dataclasses

import numpy as np
import pytest

from particles.mean_field import wasserstein_circle
from simulations import mean_field as study


def tiny(**kwargs):
    defaults = dict(M=128, t_max=2.0, save_dt=0.5, ns=(16, 256), ensembles=2, bins=32, fit_times=(0.0, 2.0))
    return study.MeanFieldConfig(**{**defaults, **kwargs})


def test_run_load_plot_and_resume(tmp_path):
    config = tiny()
    path = study.run(config, tmp_path / "mf.h5", progress=False)
    data = study.load(path)
    assert data["rho"].shape == (5, 128) and data["ts"][-1] == 2.0
    assert data["w1"].shape == (2, 2, 5) and data["hist"].shape == (2, 5, 32)
    np.testing.assert_array_equal(data["ns"], [16, 256])
    # Stored W1 is the distance between the stored draw's empirical measure and rho(t).
    assert np.all(data["w1"] > 0)
    # Particle-to-PDE distance decreases with n at every time (16x the particles: ~4x closer).
    mean = data["w1"].mean(axis=1)
    assert np.all(mean[1] < 0.5 * mean[0]), mean
    # Energies: the draws' start near the PDE's, every curve non-decreasing.
    assert np.all(np.diff(data["pde_energy"]) >= 0)
    assert np.all(np.diff(data["energy"], axis=-1) >= -1e-12)
    np.testing.assert_allclose(data["energy"][1, :, 0], data["pde_energy"][0], rtol=0.1)
    fig = study.plot(path)
    assert len(fig.axes) >= 6 and path.with_suffix(".png").stat().st_size > 10_000
    # A rerun resumes: nothing to do, same results.
    before = study.load(path)["w1"]
    study.run(config, path, progress=False)
    np.testing.assert_array_equal(study.load(path)["w1"], before)
    with pytest.raises(ValueError, match="config differs"):
        study.run(dataclasses.replace(config, beta=4.0), path, progress=False)


def test_w1_fit_and_main(tmp_path, capsys):
    path = study.main(
        ["--M", "64", "--t-max", "0.6", "--ns", "16", "32", "--ensembles", "2", "--out", str(tmp_path), "--no-progress"]
    )
    out = capsys.readouterr().out
    assert "slope" in out and "first merge" in out and path.exists()
    fits = study.w1_fits(study.load(path))
    np.testing.assert_allclose(sorted(fits), [0.0, 0.1, 0.2, 0.4, 0.6], atol=1e-12)
    assert all(f.num_points == 4 for f in fits.values())


def test_config_checks_and_the_initial_density():
    with pytest.raises(ValueError, match="save_dt must be a multiple of dt"):
        tiny(save_dt=0.25, dt=0.1)
    with pytest.raises(ValueError, match="bins must divide"):
        tiny(bins=48)
    rho0 = tiny().rho0()
    assert rho0.sum() * 2 * np.pi / 128 == pytest.approx(1.0, rel=1e-14)
    assert wasserstein_circle((np.arange(128) * 2 * np.pi / 128, rho0), np.array([0.0])) > 0
