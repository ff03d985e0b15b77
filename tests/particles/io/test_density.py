"""particles.io.density: the layout of density trajectories, reading back, and refusing
other files."""

import h5py
import numpy as np
import pytest

import particles
from particles.io import DensityWriter, ResultStore, StoreError, info, read_density
from particles.io.density import is_density_file
from particles.mean_field import MeanFieldSolution, solve


def test_frames_round_trip_and_a_cut_frame_does_not_count(tmp_path):
    path = tmp_path / "rho.h5"
    theta = np.arange(8) * np.pi / 4
    params = {"beta": 2.0, "dynamics": "SA", "rho0": np.ones(8), "Q": None}
    with DensityWriter(path, theta, params) as writer:
        assert writer.frames == 0 and writer.last is None
        for k in range(3):
            writer.append(0.5 * k, np.full(8, float(k)), 10 * k)
    # A value written without its time (a cut between the two) is not a frame.
    with h5py.File(path, "a") as f:
        f["fields/density/value"].resize(4, axis=0)
    stored = read_density(path)
    np.testing.assert_array_equal(stored.ts, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(stored.rho[:, 0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(stored.steps, [0, 10, 20])
    np.testing.assert_array_equal(stored.theta, theta)
    assert stored.params["beta"] == 2.0 and stored.params["Q"] is None
    with DensityWriter(path, theta, params) as writer:
        assert writer.frames == 3 and writer.last[0] == 1.0 and writer.last[2] == 20
    assert is_density_file(path)
    facts = info(path)
    assert (facts["kind"], facts["frames"], facts["complete"]) == ("density", 3, False)


def test_particles_load_reads_a_solver_file(tmp_path):
    rho0 = np.full(32, 1 / (2 * np.pi))
    solve(rho0, beta=1.0, t_max=1.0, frames=3, store=tmp_path / "u.h5")
    sol = particles.load(tmp_path / "u.h5")
    assert isinstance(sol, MeanFieldSolution) and sol.rho.shape == (3, 32)
    assert info(tmp_path / "u.h5")["complete"]


def test_other_files_are_refused(tmp_path):
    store = tmp_path / "sweep.h5"
    ResultStore(store, {"n": 1})
    assert not is_density_file(store)
    with pytest.raises(StoreError, match="holds 'results' data, expected 'density'"):
        read_density(store)
    with pytest.raises(StoreError, match="holds 'results' data"):
        DensityWriter(store, np.zeros(8), {"beta": 1.0})
