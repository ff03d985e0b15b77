"""particles.load and particles.io.info on every kind of file the package writes, the settings
read from the file alone; files of earlier versions (no kind attribute) by their layout."""

import datetime

import h5py
import numpy as np
import pytest

import particles
from particles import io
from particles.io import ResultStore, StoreError, SweepResults

TINY = dict(n=4, d=2, batch=3, t_max=0.4, dt=0.1, checkpoints=3, seed=5)


def _recent(created):
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(created)
    return datetime.timedelta(0) <= age < datetime.timedelta(minutes=10)


def _forget_kind(path):
    """The file as an earlier version wrote it: no kind or created attribute."""
    with h5py.File(path, "a") as f:
        for name in ("kind", "created"):
            if name in f["h5md"].attrs:
                del f["h5md"].attrs[name]


def test_run_reopens_as_its_trajectory_with_seed_and_creation_time(tmp_path):
    x0 = particles.sample_sphere(5, 3, batch=2, seed=11)
    traj = particles.simulate(x0, beta=2.0, t_max=0.3, dt=0.1, store=io.RunFile(tmp_path / "run.h5", seed=11))
    loaded = particles.load(tmp_path / "run.h5")
    assert isinstance(loaded, particles.Trajectory) and loaded.params == traj.params
    np.testing.assert_array_equal(np.asarray(loaded.xs), traj.xs)
    facts = io.info(tmp_path / "run.h5")
    assert facts["kind"] == "run" == io.kind(tmp_path / "run.h5")
    assert facts["seed"] == 11 and facts["complete"] and facts["frames"] == 4
    assert _recent(facts["created"])
    _forget_kind(tmp_path / "run.h5")
    assert io.info(tmp_path / "run.h5")["created"] is None
    assert isinstance(particles.load(tmp_path / "run.h5"), particles.Trajectory)


def test_run_without_a_seed_says_none(tmp_path):
    particles.simulate(particles.sample_sphere(4, 2, seed=0), beta=1.0, t_max=0.1, dt=0.1, store=tmp_path / "r.h5")
    assert io.info(tmp_path / "r.h5")["seed"] is None


def _phase_diagram_file(path, betas=(0.5, 2.0)):
    ensemble = particles.ClusteringEnsemble(**TINY)
    store = particles.PhaseDiagramStore(path, betas, ensemble)
    for k in store.todo():
        store.save(k, particles.beta_statistics(store.betas[k], ensemble))
    return particles.phase_diagram(betas, **TINY)


def test_phase_diagram_reopens_from_its_file_alone(tmp_path):
    path = tmp_path / "sweep.h5"
    direct = _phase_diagram_file(path)
    for older in (False, True):
        loaded = particles.load(path)
        assert isinstance(loaded, particles.PhaseDiagram)
        assert loaded.ensemble == direct.ensemble
        for name in ("betas", "ts", "density", "clusters", "final_density"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(direct, name))
        facts = io.info(path)
        assert (facts["kind"], facts["seed"], facts["saved"], facts["total"]) == ("phase_diagram", 5, 2, 2)
        assert facts["complete"] and facts["config"]["batch"] == 3
        if not older:
            assert _recent(facts["created"])
            _forget_kind(path)  # the layout tells an older file apart


def test_unfinished_phase_diagram_is_described_and_refused(tmp_path):
    path = tmp_path / "sweep.h5"
    store = particles.PhaseDiagramStore(path, (0.5, 2.0), particles.ClusteringEnsemble(**TINY))
    store.save(1, particles.beta_statistics(2.0, store.ensemble))
    facts = io.info(path)
    assert (facts["saved"], facts["total"], facts["complete"]) == (1, 2, False)
    assert store.todo() == [0]
    with pytest.raises(ValueError, match="1 of 2 betas"):
        particles.load(path)


def test_phase_diagram_store_refuses_another_sweep_and_bad_arguments(tmp_path):
    path = tmp_path / "sweep.h5"
    ensemble = particles.ClusteringEnsemble(**TINY)
    particles.PhaseDiagramStore(path, (0.5,), ensemble)
    with pytest.raises(ValueError, match="'batch'"):
        particles.PhaseDiagramStore(path, (0.5,), particles.ClusteringEnsemble(**{**TINY, "batch": 4}))
    with pytest.raises(TypeError, match="together"):
        particles.PhaseDiagramStore(path, (0.5,))
    with pytest.raises(TypeError, match="ClusteringEnsemble"):
        particles.PhaseDiagramStore(tmp_path / "b.h5", (0.5,), dict(TINY))
    with pytest.raises(ValueError, match=r"k must be in \[0, 1\)"):
        particles.PhaseDiagramStore(path).save(1, {})
    ResultStore(tmp_path / "other.h5", {"n": 1}, kind="size_sweep")
    with pytest.raises(ValueError, match="'size_sweep' sweep"):
        particles.PhaseDiagramStore(tmp_path / "other.h5")


@pytest.mark.parametrize(
    "config, kind",
    [
        ({"kind": "hessian_growth", "seed": 3, "widths": np.arange(3)}, "hessian_growth"),
        ({"study": "metastability"}, "metastability"),  # the other study layout, without a seed
        ({"n": 2}, "results"),
    ],
)
def test_sweep_files_reopen_with_their_config(tmp_path, config, kind):
    path = tmp_path / "study.h5"
    store = ResultStore(path, config)
    store.save("a", values=np.arange(4.0), label="x")
    store.save("b", values=np.ones(2), label="y")
    store.save_observable("summary", np.eye(2), {"unit": "1"})
    for _ in range(2):
        loaded = particles.load(path)
        assert isinstance(loaded, SweepResults) and loaded.kind == kind
        assert list(loaded.results) == ["a", "b"] and loaded.results["b"]["label"] == "y"
        np.testing.assert_array_equal(loaded.results["a"]["values"], np.arange(4.0))
        np.testing.assert_array_equal(loaded.observables["summary"][0], np.eye(2))
        assert set(loaded.config) == set(config)
        facts = io.info(path)
        assert (facts["kind"], facts["saved"], facts["seed"]) == (kind, 2, config.get("seed"))
        assert facts["observables"] == ["summary"]
        _forget_kind(path)


def test_curvature_along_a_run_reopens_with_the_run(tmp_path):
    from hessian.flow import along_trajectory, read_curvature

    path = tmp_path / "run.h5"
    particles.simulate(particles.sample_sphere(4, 3, seed=2), beta=1.0, t_max=0.2, dt=0.1, store=path)
    computed = along_trajectory(path, loss="target", write=True)
    traj = particles.load(path)
    assert isinstance(traj, particles.Trajectory)
    np.testing.assert_array_equal(traj.observables["curvature.target.norms"].value, computed.norms)
    with pytest.raises(KeyError, match="no observable 'energy'"):
        traj.observables["energy"]
    assert any(name.startswith("curvature.target") for name in io.info(path)["observables"])
    np.testing.assert_array_equal(read_curvature(path, "target").norms, computed.norms)


def test_a_foreign_file_is_refused(tmp_path):
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.zeros(2)
    for reader in (particles.load, io.info, io.kind):
        with pytest.raises(StoreError, match="not written by this package"):
            reader(tmp_path / "foreign.h5")
    with pytest.raises(FileNotFoundError):
        particles.load(tmp_path / "missing.h5")
