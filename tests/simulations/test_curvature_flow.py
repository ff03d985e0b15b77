"""simulations.curvature_flow end to end on tiny runs: curvature in the run's HDF5 file, figure and slope
table next to it, Q/K curvature collapsing as the tokens merge; the pooled cluster power-law fits."""

import numpy as np

import particles
from hessian import along_trajectory, read_curvature
from simulations import curvature_flow


def _stored_run(path, *, systems=2, n=6, d=3, beta=1.0, t_max=30.0, dt=0.1):
    """A clustering SA run (Q = K = V = I) by the authors' Euler scheme in numpy, saved with particles.io."""
    params = particles.SimulationParams(beta=beta, t_max=t_max, dt=dt)
    ts = params.step_grid()[0]
    x = np.stack([particles.sample_sphere(n, d, seed=s) for s in range(systems)])
    xs = [x]
    for _ in ts[1:]:
        T = beta * x @ np.swapaxes(x, 1, 2)
        A = np.exp(T - T.max(-1, keepdims=True))
        x = x + dt * (A / A.sum(-1, keepdims=True)) @ x
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        xs.append(x)
    particles.io.save(path, particles.Trajectory(ts=ts, xs=np.stack(xs), params=params))
    return path


def test_from_stored_run(tmp_path):
    path = _stored_run(tmp_path / "run.h5")
    out = curvature_flow.main(["--from", str(path), "--every", "3", "--no-progress", "--in-place"])
    assert out == path
    png = tmp_path / "run_target.png"
    slopes = tmp_path / "run_target_slopes.txt"
    assert png.exists() and png.stat().st_size > 10_000 and slopes.exists()
    curv = read_curvature(path, "target")
    assert curv.frames[1] == 3 and curv.settings["loss"] == "target"
    # Q/K curvature of the first frame vs the last (one cluster): down by many orders; V stays
    assert np.all(curv.cluster_count[-1] == 1)
    for b in "QK":
        assert np.all(curv.block_norm("H", b)[-1] < 1e-10 * curv.block_norm("H", b)[0])
    assert np.all(curv.block_norm("H_o", "V")[-1] > 0.1 * curv.block_norm("H_o", "V")[0])
    text = slopes.read_text()
    assert "fitted p" in text and "H_o   QQ" in text
    # rerun: stored curvature is reused, --overwrite recomputes with other settings
    argv = ["--from", str(path), "--no-progress", "--in-place", "--every", "10", "--loss", "target"]
    curvature_flow.main(argv + ["--overwrite"])
    assert read_curvature(path, "target").frames[1] == 10


def test_from_stored_run_writes_its_own_file(tmp_path):
    """Without --in-place the run's file is only read: the curvature goes to <out>/<stem>_curvature.h5, and
    reads back equal to the in-place result."""
    path = _stored_run(tmp_path / "run.h5", t_max=3.0)
    before = path.read_bytes()
    out = curvature_flow.main(["--from", str(path), "--every", "5", "--no-progress", "--out", str(tmp_path / "o")])
    assert path.read_bytes() == before
    assert out == tmp_path / "o" / "run_curvature.h5"
    assert (tmp_path / "o" / "run_curvature_target.png").exists()
    own = curvature_flow.load(out, "target")
    reference = along_trajectory(particles.load(path), every=5)
    np.testing.assert_array_equal(own.frames, reference.frames)
    np.testing.assert_allclose(own.norms, reference.norms, rtol=1e-12)
    np.testing.assert_array_equal(own.cluster_count, reference.cluster_count)
    assert own.settings["loss"] == "target" and own.settings["beta"] == 1.0


def test_simulate_and_energy_loss(tmp_path):
    path = curvature_flow.main(
        [
            "--n",
            "4",
            "--d",
            "3",
            "--batch",
            "2",
            "--t-max",
            "2",
            "--dt",
            "0.1",
            "--loss",
            "energy",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert path.parent == tmp_path and particles.io.info(path)["complete"]
    curv = read_curvature(path, "energy")
    assert curv.norms.shape == (21, 2, 3, 3, 3)
    assert path.with_name(path.stem + "_energy.png").exists()
    # the same settings find the stored run (named by a digest of them) and its curvature instead of computing again
    args = curvature_flow.parse_args(
        ["--n", "4", "--d", "3", "--batch", "2", "--t-max", "2", "--dt", "0.1", "--loss", "energy"]
    )
    config = curvature_flow.config_from_args(args)
    mtime = path.stat().st_mtime_ns
    assert curvature_flow.run_path(config.simulation, tmp_path) == path
    assert curvature_flow.run(config, path, progress=False) == path and path.stat().st_mtime_ns == mtime


def test_cluster_power_law_table(tmp_path):
    """The pooled fits of cluster_power_law on a clustering run (SA, Q = K = V = I, d = 3, beta = 1: a.e. start
    clusters, Thm 6.1 of Geshkovski et al., 2023) give the exponents of the moment degrees within 0.05
    (tests/hessian/test_flow.py checks the same exponents system by system)."""
    curv = along_trajectory(particles.load(_stored_run(tmp_path / "run.h5", n=8, t_max=40.0)), every=5)
    rows = {(r["kind"], r["block"][0], r["block"][1]): r for r in curvature_flow.cluster_power_law(curv)}
    checked = {
        ("H_o", "Q", "Q"): 2.0,
        ("H_o", "K", "K"): 2.0,
        ("H_o", "Q", "V"): 1.0,
        ("H_f", "Q", "Q"): 1.5,
        ("H_f", "Q", "K"): 1.0,
        ("H_f", "Q", "V"): 1.0,
    }
    for key, p in checked.items():
        assert curvature_flow.CLUSTER_EXPONENTS[key[0]][key[1:]] == p
        assert rows[key]["points"] >= 10 and abs(rows[key]["slope"] - p) < 0.05, rows[key]
        assert rows[key]["agrees"] is True and rows[key]["verdict"].startswith("agrees: theory"), rows[key]


def test_simulated_run_records_its_seed(tmp_path):
    simulation = curvature_flow.SimulationConfig(n=4, d=3, systems=2, t_max=0.2, seed=9)
    path = curvature_flow.simulate(simulation, tmp_path / "run.h5", progress=False)
    assert particles.io.info(path)["seed"] == 9
