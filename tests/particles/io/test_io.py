"""particles.io: stored runs against the in-memory ``simulate``, kill and resume, damaged
files, lazy reading, observables and the sweep result store."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import particles
from particles import _simulate, io, sample_sphere, simulate
from particles.io import ResultStore, RunFile, StoreError, layout

from . import store_worker

RUN = dict(beta=1.5, t_max=2.0, dt=0.05, save_every=2)


@pytest.fixture
def x0():
    return sample_sphere(6, 3, batch=3, seed=0)


@pytest.fixture
def reference(x0):
    """The uninterrupted in-memory run: the independent reference of every stored run."""
    return simulate(x0, **RUN)


def _interrupt_after(monkeypatch, n_frames):
    """Make ``run`` raise after yielding n_frames, as a crash of the run would."""
    run = _simulate.run

    def crashing_run(*args, **kwargs):
        for k, frame in enumerate(run(*args, **kwargs)):
            if k == n_frames:
                raise KeyboardInterrupt("simulated crash")
            yield frame

    monkeypatch.setattr(_simulate, "run", crashing_run)


# ----------------------------------------------------------------------------- round trip


def test_stored_run_equals_in_memory_run(tmp_path, x0, reference):
    traj = simulate(x0, **RUN, store=tmp_path / "run.h5")
    assert traj.params == reference.params
    np.testing.assert_array_equal(traj.ts, reference.ts)
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs)
    loaded = particles.load(tmp_path / "run.h5")
    np.testing.assert_array_equal(np.asarray(loaded.xs), reference.xs)
    np.testing.assert_array_equal(loaded.final, reference.final)


def test_every_parameter_round_trips_bit_for_bit(tmp_path, rng):
    # No simulation needed: any valid params with frames of the right shape.
    d, batch = 3, 2
    Q = rng.standard_normal((batch, d, d))
    K = rng.standard_normal((d, d)) * np.pi  # full-mantissa values
    x0 = sample_sphere(5, d, batch=batch, seed=4)
    params = particles.SimulationParams(
        beta=0.1 + 1e-13,
        t_max=0.3,
        dt=0.1,
        dynamics="USA",
        method="rk4",
        Q=Q,
        K=K,
        save_every=2,
        rtol=1.234e-7,
        atol=3e-11,
    )
    xs = np.stack([x0, -x0, x0])
    traj = particles.Trajectory(ts=np.array([0.0, 0.2, 0.3]), xs=xs, params=params)
    path = tmp_path / "run.h5"
    io.save(path, traj, seed=123)
    params = particles.load(path).params
    assert params == traj.params
    for name in ("beta", "t_max", "dt", "rtol", "atol"):
        assert getattr(params, name) == getattr(traj.params, name)  # exact float equality
    assert (params.dynamics, params.method, params.save_every, params.dtype) == ("USA", "rk4", 2, "float64")
    assert params.Q.dtype == np.float64 and params.Q.tobytes() == Q.tobytes()
    assert params.K.tobytes() == K.tobytes()
    assert params.V is None
    with h5py.File(path, "r") as f:
        assert f["parameters/x0"][()].tobytes() == x0.tobytes()
    meta = io.info(path)
    assert meta["seed"] == 123 and meta["complete"]
    assert meta["package_version"] == particles.__version__


def test_h5md_layout(tmp_path, x0, reference):
    path = tmp_path / "run.h5"
    simulate(x0, **RUN, store=RunFile(path, store_dtype="float32"))
    m = len(reference.ts)
    # Read with h5py alone: the layout is the contract with other programs.
    with h5py.File(path, "r") as f:
        assert list(f["h5md"].attrs["version"]) == [1, 1]
        assert f["h5md/creator"].attrs["name"] == "attention-dynamics"
        assert f["h5md/creator"].attrs["version"] == particles.__version__
        assert f["h5md"].attrs["particles_schema_version"] == io.SCHEMA_VERSION
        assert f["particles/tokens/box"].attrs["dimension"] == 3
        value = f["particles/tokens/position/value"]
        assert value.shape == (m,) + x0.shape and value.dtype == np.float32
        assert value.maxshape[0] is None and value.chunks is not None
        assert value.compression == io.DEFAULT_COMPRESSION and value.fletcher32
        np.testing.assert_array_equal(f["particles/tokens/position/time"][()], reference.ts)
        np.testing.assert_array_equal(f["particles/tokens/position/step"][()], reference.params.frame_steps())
        assert f["parameters"].attrs["beta"] == RUN["beta"]
        assert f["parameters"].attrs["method"] == "euler"
        assert f["parameters"].attrs["store_dtype"] == "float32"
        assert f["parameters/x0"].dtype == np.float64


def test_float32_storage_rounds_frames_and_keeps_exact_final_state(tmp_path, x0, reference):
    path = tmp_path / "run.h5"
    traj = simulate(x0, **RUN, store=RunFile(path, store_dtype="float32"))
    assert traj.xs.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs.astype(np.float32))
    frame, t, x = io.last_state(path)
    assert frame == len(reference.ts) - 1 and t == reference.ts[-1]
    assert x.dtype == np.float64 and np.array_equal(x, reference.final)


def test_save_of_in_memory_trajectory(tmp_path, reference):
    path = tmp_path / "run.h5"
    io.save(path, reference, compression="gzip")
    np.testing.assert_array_equal(np.asarray(particles.load(path).xs), reference.xs)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        io.save(path, reference)
    io.save(path, reference, overwrite=True, store_dtype="float32")
    assert particles.load(path).xs.dtype == np.float32
    assert np.array_equal(io.last_state(path)[2], reference.final)


# ----------------------------------------------------------------------------- lazy reading


def test_lazy_indexing_matches_numpy(tmp_path, reference):
    path = tmp_path / "run.h5"
    io.save(path, reference)
    xs, ref = particles.load(path).xs, reference.xs
    assert isinstance(xs, io.LazyFrames) and xs.shape == ref.shape and len(xs) == len(ref)
    for index in (
        3,
        -1,
        slice(2, 9),
        slice(None, None, 3),
        slice(None, None, -2),
        (slice(None), 1),
        (slice(1, 4), 2, 0),
        [4, 1, 1, -1],
        (Ellipsis, 0),
        (-2, Ellipsis),
    ):
        np.testing.assert_array_equal(xs[index], ref[index], err_msg=str(index))
    np.testing.assert_array_equal(np.stack(list(xs)), ref)
    with pytest.raises(IndexError):
        xs[len(ref)]


def _bytes_read():
    with open("/proc/self/io") as fh:
        return int(next(line for line in fh if line.startswith("rchar")).split()[1])


def test_slicing_reads_only_the_slice(tmp_path, monkeypatch, rng):
    # Small chunks (16 frames x 8 systems) so that the test file stays small.
    monkeypatch.setattr(layout, "CHUNK_BYTES", 1 << 16)
    monkeypatch.setattr(layout, "SYSTEM_BLOCK_BYTES", 1 << 11)
    xs = rng.standard_normal((500, 64, 16, 2))
    params = particles.SimulationParams(beta=1.0, t_max=499.0, dt=1.0)
    traj = particles.Trajectory(ts=np.arange(500.0), xs=xs, params=params)
    path = tmp_path / "big.h5"
    io.save(path, traj, compression=None)
    size = path.stat().st_size
    lazy = particles.load(path).xs
    before = _bytes_read()
    frame = lazy[250]
    one_frame = _bytes_read() - before
    before = _bytes_read()
    system = lazy[:, 7]
    one_system = _bytes_read() - before
    np.testing.assert_array_equal(frame, xs[250])
    np.testing.assert_array_equal(system, xs[:, 7])
    assert one_frame < 0.1 * size, (one_frame, size)
    assert one_system < 0.2 * size, (one_system, size)


# ----------------------------------------------------------------------------- kill and resume


def _wait_for_frames(path, proc, n_frames, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"worker exited early: {proc.communicate()[1].decode()[-2000:]}")
        try:
            if io.info(path)["frames"] >= n_frames:
                return
        except (FileNotFoundError, StoreError):
            pass  # not created yet, or still being set up
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"the worker wrote fewer than {n_frames} frames in {timeout} s")


def test_sigkill_mid_run_then_resume(tmp_path):
    # One storage dtype only: the worker process compiles its kernels afresh (slow); resume
    # from the float64 checkpoint under float32 storage is covered in-process below.
    store_dtype = "float64"
    x0 = sample_sphere(**store_worker.X0)
    reference = simulate(x0, **store_worker.RUN)
    total = len(reference.ts)
    path = tmp_path / "killed.h5"
    worker = Path(store_worker.__file__)
    proc = subprocess.Popen(
        [sys.executable, str(worker), str(path), store_dtype], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for_frames(path, proc, 30)
        # Read while the run writes (SWMR): a consistent prefix of the reference run.
        live = particles.load(path)
        seen = len(live)
        assert 30 <= seen < total
        np.testing.assert_array_equal(np.asarray(live.xs), reference.xs[:seen].astype(store_dtype))
        with pytest.raises(RuntimeError, match="being written by another process"):
            simulate(x0, **store_worker.RUN, store=RunFile(path, resume=True, store_dtype=store_dtype))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The killed file opens and holds every frame up to its last flush.
    killed = particles.load(path)
    kept = len(killed)
    assert seen <= kept < total
    np.testing.assert_array_equal(killed.ts, reference.ts[:kept])
    np.testing.assert_array_equal(np.asarray(killed.xs), reference.xs[:kept].astype(store_dtype))
    assert io.info(path)["seed"] == store_worker.X0["seed"]
    # A truncated copy of the killed file is an error, quickly (no SWMR retry loop).
    damaged = tmp_path / "truncated.h5"
    shutil.copy(path, damaged)
    os.truncate(damaged, damaged.stat().st_size // 2)
    with pytest.raises(StoreError, match="truncated"):
        particles.load(damaged)
    # Resume completes it: the same frames as the uninterrupted run, bit for bit.
    traj = simulate(x0, **store_worker.RUN, store=RunFile(path, resume=True, store_dtype=store_dtype))
    assert len(traj) == total
    np.testing.assert_array_equal(traj.ts, reference.ts)
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs.astype(store_dtype))
    assert np.array_equal(io.last_state(path)[2], reference.final)
    with h5py.File(path, "r") as f:  # closed cleanly: opens without SWMR
        assert f["particles/tokens/position/step"].shape == (total,)


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("store_dtype", [None, "float32"])
@pytest.mark.parametrize("crash_at", [1, 7])
def test_resume_after_crash_is_bit_for_bit(tmp_path, monkeypatch, x0, method, store_dtype, crash_at):
    reference = simulate(x0, **RUN, method=method)
    path = tmp_path / "run.h5"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, crash_at)
        with pytest.raises(KeyboardInterrupt):
            # No timed flush: the frames are flushed when the exception closes the store.
            simulate(x0, **RUN, method=method, store=RunFile(path, store_dtype=store_dtype, flush_every=1e9))
    assert io.info(path)["frames"] == crash_at
    traj = simulate(x0, **RUN, method=method, store=RunFile(path, resume=True, store_dtype=store_dtype))
    dtype = store_dtype or "float64"
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs.astype(dtype))
    np.testing.assert_array_equal(traj.ts, reference.ts)
    assert np.array_equal(io.last_state(path)[2], reference.final)


def test_resume_is_bit_for_bit_where_runs_could_use_the_span_of_x0(tmp_path, monkeypatch):
    # d >= 2n with V = I: in memory, simulate integrates in the span of x0; a stored run
    # keeps user coordinates, so that its resume is exact.
    x0 = sample_sphere(4, 12, batch=2, seed=5)
    uninterrupted = simulate(x0, **RUN, store=tmp_path / "whole.h5")
    path = tmp_path / "run.h5"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 5)
        with pytest.raises(KeyboardInterrupt):
            simulate(x0, **RUN, store=path)
    traj = simulate(x0, **RUN, store=RunFile(path, resume=True))
    np.testing.assert_array_equal(np.asarray(traj.xs), np.asarray(uninterrupted.xs))
    np.testing.assert_allclose(np.asarray(traj.xs), simulate(x0, **RUN).xs, rtol=0, atol=1e-14)


def test_resume_from_older_checkpoint_slot(tmp_path, monkeypatch, x0, reference):
    # A kill between writing frame k to `step` and its checkpoint leaves the previous slot:
    # resume drops frame k and recomputes it from frame k - 1.
    path = tmp_path / "run.h5"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 7)
        with pytest.raises(KeyboardInterrupt):
            simulate(x0, **RUN, store=RunFile(path, flush_every=1e-9, store_dtype="float32"))
    with h5py.File(path, "a") as f:
        frames = f["parameters/checkpoint/frame"]
        assert sorted(frames[()]) == [5, 6]
        frames[list(frames[()]).index(6)] = -1
    assert io.last_state(path)[0] == 5
    traj = simulate(x0, **RUN, store=RunFile(path, resume=True, store_dtype="float32"))
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs.astype(np.float32))
    assert np.array_equal(io.last_state(path)[2], reference.final)


def _crashed_run(tmp_path, monkeypatch, x0, reference, n_frames, flush_every, store_dtype):
    """A file holding the first n_frames of the reference run, as a crash leaves it."""
    path = tmp_path / "run.h5"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, n_frames)
        with pytest.raises(KeyboardInterrupt):
            simulate(x0, **RUN, store=RunFile(path, flush_every=flush_every, store_dtype=store_dtype))
    return path


def test_consecutive_flushes_use_both_checkpoint_slots(tmp_path, monkeypatch, x0, reference):
    # Flushes after frame 0 and after frame 6 (same parity): the second must not overwrite
    # the slot of the first, or a cut inside it leaves no intact checkpoint.
    path = _crashed_run(tmp_path, monkeypatch, x0, reference, 7, 1e9, None)
    with h5py.File(path, "r") as f:
        assert sorted(f["parameters/checkpoint/frame"][()]) == [0, 6]


def _set_slot(path, frame, new_frame=None, state=None):
    """Overwrite the checkpoint slot that holds ``frame``, as a torn write would."""
    with h5py.File(path, "a") as f:
        ckpt = f["parameters/checkpoint"]
        slot = list(ckpt["frame"][()]).index(frame)
        if new_frame is not None:
            ckpt["frame"][slot] = new_frame
        if state is not None:
            ckpt["state"][slot] = state


def test_state_of_another_frame_is_refused_until_repaired(tmp_path, monkeypatch, x0, reference):
    # The torn flush of the parity bug: frame 6's state in the slot of frame 0, frame 6 not
    # indexed. Resuming from it continued another run (0.2 off, silently).
    path = _crashed_run(tmp_path, monkeypatch, x0, reference, 7, 1e9, None)
    _set_slot(path, 6, new_frame=-1)
    _set_slot(path, 0, state=reference.xs[6])
    content = path.read_bytes()
    with pytest.raises(
        StoreError,
        match=r"no checkpoint verifies.*slot \d \(frame 0\) fails "
        r"its checksum.*particles\.io\.repair",
    ):
        simulate(x0, **RUN, store=RunFile(path, resume=True))
    assert path.read_bytes() == content  # a refusal writes nothing
    with pytest.raises(StoreError, match="no checkpoint verifies"):
        io.last_state(path)
    np.testing.assert_array_equal(np.asarray(particles.load(path).xs), reference.xs[:7])
    # float64 frames are the exact states: repair restarts from the last one, frame 6.
    with pytest.warns(RuntimeWarning, match="rebuilt the checkpoint from the stored frame 6"):
        io.repair(path)
    assert io.last_state(path)[0] == 6
    traj = simulate(x0, **RUN, store=RunFile(path, resume=True))
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs)
    assert np.array_equal(io.last_state(path)[2], reference.final)


def test_unverified_float32_file_is_repaired_back_to_x0(tmp_path, monkeypatch, x0, reference):
    # Rounded frames cannot restart a float64 run exactly: repair goes back to x0, and
    # resume recomputes every frame.
    path = _crashed_run(tmp_path, monkeypatch, x0, reference, 7, 1e-9, "float32")
    with h5py.File(path, "a") as f:
        f["parameters/checkpoint/checksum"][:] = 0
    with pytest.raises(StoreError, match=r"slot \d \(frame \d\) fails its checksum"):
        simulate(x0, **RUN, store=RunFile(path, resume=True, store_dtype="float32"))
    with pytest.warns(RuntimeWarning, match="rebuilt the checkpoint from x0"):
        io.repair(path)
    assert io.last_state(path)[0] == 0 and np.array_equal(io.last_state(path)[2], x0)
    traj = simulate(x0, **RUN, store=RunFile(path, resume=True, store_dtype="float32"))
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs.astype(np.float32))
    assert np.array_equal(io.last_state(path)[2], reference.final)


def test_file_without_checkpoint_checksums_is_refused_until_repaired(tmp_path, monkeypatch, x0, reference):
    # Files written before checksums existed: their slots cannot be trusted.
    path = _crashed_run(tmp_path, monkeypatch, x0, reference, 7, 1e-9, None)
    with h5py.File(path, "a") as f:
        del f["parameters/checkpoint/checksum"]
    with pytest.raises(StoreError, match="predates checkpoint checksums"):
        simulate(x0, **RUN, store=RunFile(path, resume=True))
    with pytest.warns(RuntimeWarning, match="stored frame 6"):
        io.repair(path)
    traj = simulate(x0, **RUN, store=RunFile(path, resume=True))
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs)


def test_checkpoint_that_disagrees_with_its_stored_frame_is_skipped(tmp_path, monkeypatch, x0, reference):
    # A slot whose checksum verifies but whose frame on disk holds other numbers: resume
    # takes the older slot and recomputes the frames after it, the changed one included.
    path = _crashed_run(tmp_path, monkeypatch, x0, reference, 7, 1e-9, None)
    with h5py.File(path, "a") as f:
        f["particles/tokens/position/value"][6] = reference.xs[5]
    assert io.last_state(path)[0] == 5
    traj = simulate(x0, **RUN, store=RunFile(path, resume=True))
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs)


def test_float32_storage_slot_with_a_torn_low_bit_is_skipped(tmp_path, monkeypatch, x0, reference):
    # The stored float32 frame cannot see the last bit of a float64 state; the checksum
    # does: resume takes the older slot and stays bit for bit.
    path = _crashed_run(tmp_path, monkeypatch, x0, reference, 7, 1e-9, "float32")
    torn = reference.xs[6].copy()
    torn.view(np.uint64)[0, 0, 0] ^= 1
    assert torn.astype(np.float32).tobytes() == reference.xs[6].astype(np.float32).tobytes()
    _set_slot(path, 6, state=torn)
    assert io.last_state(path)[0] == 5
    traj = simulate(x0, **RUN, store=RunFile(path, resume=True, store_dtype="float32"))
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs.astype(np.float32))
    assert np.array_equal(io.last_state(path)[2], reference.final)


def test_resume_dopri5_restarts_controller_within_tolerance(tmp_path, monkeypatch, x0):
    # dopri5 restarts its step size from dt at the resumed frame: not bit for bit, but
    # both runs meet the tolerances.
    run = dict(RUN, method="dopri5", rtol=1e-9, atol=1e-12, save_every=1)
    reference = simulate(x0, **run)
    path = tmp_path / "run.h5"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 20)
        with pytest.raises(KeyboardInterrupt):
            simulate(x0, **run, store=RunFile(path, flush_every=1e-9))
    traj = simulate(x0, **run, store=RunFile(path, resume=True))
    np.testing.assert_array_equal(traj.xs[:20], reference.xs[:20])
    np.testing.assert_allclose(np.asarray(traj.xs), reference.xs, rtol=0, atol=1e-7)


def test_resume_of_finished_run_is_a_no_op(tmp_path, x0, reference):
    path = tmp_path / "run.h5"
    simulate(x0, **RUN, store=path)
    mtime = path.stat().st_mtime_ns
    traj = simulate(x0, **RUN, store=RunFile(path, resume=True))
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs)
    assert path.stat().st_mtime_ns == mtime


def test_resume_of_missing_file_starts_the_run(tmp_path, x0, reference):
    traj = simulate(x0, **RUN, store=RunFile(tmp_path / "new.h5", resume=True))
    np.testing.assert_array_equal(np.asarray(traj.xs), reference.xs)


@pytest.mark.parametrize(
    "change, name",
    [
        (dict(beta=2.0), "'beta'"),
        (dict(method="rk4"), "'method'"),
        (dict(V=np.eye(3) * 0.5), "'V'"),
        (dict(t_max=3.0), "'t_max'"),
        (dict(store_dtype="float32"), "store_dtype"),
    ],
)
def test_resume_with_other_parameters_names_them(tmp_path, x0, change, name):
    path = tmp_path / "run.h5"
    simulate(x0, **RUN, store=path)
    store_dtype = change.pop("store_dtype", None)
    with pytest.raises(ValueError, match=f"parameter {name}"):
        simulate(x0, **{**RUN, **change}, store=RunFile(path, resume=True, store_dtype=store_dtype))


def test_resume_with_other_x0_names_it(tmp_path, x0):
    path = tmp_path / "run.h5"
    simulate(x0, **RUN, store=path)
    with pytest.raises(ValueError, match="parameter x0"):
        simulate(sample_sphere(6, 3, batch=3, seed=1), **RUN, store=RunFile(path, resume=True))


def test_existing_file_is_never_overwritten_silently(tmp_path, x0, reference):
    path = tmp_path / "run.h5"
    simulate(x0, **RUN, store=path)
    with pytest.raises(FileExistsError, match="resume=True.*overwrite=True"):
        simulate(x0, **{**RUN, "beta": 3.0}, store=path)
    assert particles.load(path).params.beta == RUN["beta"]
    traj = simulate(x0, **{**RUN, "beta": 3.0}, store=RunFile(path, overwrite=True))
    assert traj.params.beta == 3.0


# ----------------------------------------------------------------------------- bad files


def _stored(tmp_path, x0):
    path = tmp_path / "good.h5"
    simulate(x0, **RUN, store=path)
    return path


def test_not_hdf5_and_foreign_files(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        particles.load(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(StoreError, match="not written by this package"):
        particles.load(foreign)
    other_h5md = tmp_path / "other.h5"
    with h5py.File(other_h5md, "w") as f:
        f.create_group("h5md/creator").attrs["name"] = "lammps"
    with pytest.raises(StoreError, match="creator: lammps"):
        particles.load(other_h5md)
    with pytest.raises(FileNotFoundError):
        particles.load(tmp_path / "missing.h5")


def test_wrong_schema_version_and_kind(tmp_path, x0):
    path = _stored(tmp_path, x0)
    ResultStore(tmp_path / "sweep.h5", {"n": 3})
    with pytest.raises(StoreError, match="holds 'results' data.*particles.load reads any"):
        particles.io.load(tmp_path / "sweep.h5")
    assert particles.load(tmp_path / "sweep.h5").config == {"n": 3}
    with pytest.raises(StoreError, match="holds 'trajectory' data"):
        ResultStore(path, {"n": 3})
    with h5py.File(path, "a") as f:
        f["h5md"].attrs["particles_schema_version"] = 99
    with pytest.raises(StoreError, match="schema version 99"):
        particles.load(path)


def test_truncated_file(tmp_path, x0):
    path = _stored(tmp_path, x0)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(StoreError, match="truncated"):
        particles.load(path)


def test_damaged_frames_and_missing_datasets(tmp_path, x0):
    path = _stored(tmp_path, x0)
    with h5py.File(path, "r") as f:
        info = f["particles/tokens/position/value"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:  # scribble over the middle of the first chunk
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xff" * 16)
    traj = particles.load(path)  # metadata intact: opens
    with pytest.raises(StoreError, match="damaged"):
        traj.xs[0]
    with h5py.File(path, "a") as f:
        del f["particles/tokens/position/time"]
    with pytest.raises(StoreError, match="position/time is missing"):
        particles.load(path)


# ----------------------------------------------------------------------------- observables


def test_observable_round_trip(tmp_path, x0, reference):
    path = _stored(tmp_path, x0)
    values = np.arange(len(reference.ts) * 3, dtype=np.float64).reshape(-1, 3) / 7
    io.write_observable(path, "clusters", values, {"method": "dbscan", "eps": 1e-3})
    obs = io.read_observable(path, "clusters")
    assert obs.value.tobytes() == values.tobytes()
    np.testing.assert_array_equal(obs.time, reference.ts)
    assert obs.attrs == {"method": "dbscan", "eps": 1e-3}
    assert io.info(path)["observables"] == ["clusters"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        io.write_observable(path, "clusters", values)
    io.write_observable(path, "clusters", values[:, 0], overwrite=True)
    assert io.read_observable(path, "clusters").value.shape == (len(reference.ts),)
    with pytest.raises(ValueError, match="one entry per frame"):
        io.write_observable(path, "energy", values[:-1])
    with pytest.raises(ValueError, match="name"):
        io.write_observable(path, "a/b", values)
    with pytest.raises(KeyError, match="no observable 'energy'"):
        io.read_observable(path, "energy")
    # Loading still works with the observable in place (the file is not held open).
    traj = particles.load(path)
    io.write_observable(path, "energy", np.zeros(len(traj)))


# ----------------------------------------------------------------------------- result store


def test_result_store_save_load_skip(tmp_path):
    config = {"n": 32, "d": 2, "betas": np.linspace(0, 4, 5), "dynamics": "SA", "Q": None, "exact": True}
    path = tmp_path / "sweep.h5"
    store = ResultStore(path, config)
    assert store.keys() == [] and not store.done("beta=0")
    counts = np.arange(12).reshape(3, 4)
    store.save("beta=1", counts=counts, beta=1.0, label="ok", missing=None)
    store.save("beta=0", counts=counts * 2, beta=0.0, label="ok", missing=None)
    again = ResultStore(path, dict(config))  # reopen: same config
    assert again.keys() == ["beta=1", "beta=0"] and again.done("beta=1") and "beta=0" in again
    got = again.load("beta=1")
    assert got["counts"].tobytes() == counts.tobytes() and got["counts"].dtype == counts.dtype
    assert got["beta"] == 1.0 and got["label"] == "ok" and got["missing"] is None
    with pytest.raises(ValueError, match="already saved"):
        again.save("beta=1", counts=counts)
    again.delete("beta=1")
    assert not again.done("beta=1")
    with pytest.raises(KeyError, match="not saved"):
        again.load("beta=1")
    grid = np.random.default_rng(0).random((5, 7))
    again.save_observable("phase_diagram", grid, {"axes": "beta, n"})
    value, attrs = again.load_observable("phase_diagram")
    assert value.tobytes() == grid.tobytes() and attrs == {"axes": "beta, n"}


@pytest.mark.parametrize(
    "change, key",
    [
        ({"n": 64}, "'n'"),
        ({"betas": np.linspace(0, 4, 6)}, "'betas'"),
        ({"exact": 1}, "'exact'"),
        ({"extra": 1.0}, "'extra'"),
    ],
)
def test_result_store_other_config_names_the_key(tmp_path, change, key):
    config = {"n": 32, "betas": np.linspace(0, 4, 5), "exact": True}
    ResultStore(tmp_path / "sweep.h5", config)
    with pytest.raises(ValueError, match=f"at key {key}"):
        ResultStore(tmp_path / "sweep.h5", {**config, **change})
    ResultStore(tmp_path / "sweep.h5", {**config, **change}, overwrite=True)


def test_result_store_half_written_key_is_not_done(tmp_path):
    path = tmp_path / "sweep.h5"
    store = ResultStore(path, {"n": 1})
    # What a save killed before its rename leaves behind.
    with h5py.File(path, "a") as f:
        f.create_group("results/.pending/beta=1").create_dataset("counts", data=[1, 2])
    assert not store.done("beta=1") and store.keys() == []
    store.save("beta=1", counts=np.array([3, 4]))
    np.testing.assert_array_equal(store.load("beta=1")["counts"], [3, 4])


def test_result_store_bad_input(tmp_path):
    with pytest.raises(TypeError, match="config must be a dict"):
        ResultStore(tmp_path / "a.h5", [("n", 1)])
    with pytest.raises(TypeError, match="must be flat"):
        ResultStore(tmp_path / "a.h5", {"grid": {"n": 1}})
    with pytest.raises(TypeError, match=r"config\['f'\]"):
        ResultStore(tmp_path / "a.h5", {"f": object()})
    store = ResultStore(tmp_path / "a.h5", {"n": 1})
    with pytest.raises(ValueError, match="key must be"):
        store.save("a/b", x=1)
    with pytest.raises(TypeError, match="key must be a str"):
        store.done(3)


# ----------------------------------------------------------------------------- argument guards


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(store_dtype="float16"), ValueError, "store_dtype"),
        (dict(store_dtype="int"), ValueError, "store_dtype"),
        (dict(compression="zstd"), ValueError, "compression"),
        (dict(flush_every=0.0), ValueError, "flush_every"),
        (dict(resume=True, overwrite=True), ValueError, "resume and overwrite"),
        (dict(resume=1), TypeError, "resume must be a bool"),
        (dict(seed=1.5), TypeError, "seed"),
    ],
)
def test_run_file_guards(tmp_path, x0, kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate(x0, **RUN, store=RunFile(tmp_path / "run.h5", **kwargs))
    assert not (tmp_path / "run.h5").exists()


def test_store_path_guards(tmp_path, x0):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        simulate(x0, **RUN, store=3)
    with pytest.raises(ValueError, match="directory"):
        simulate(x0, **RUN, store=tmp_path)
    with pytest.raises(ValueError, match="store_dtype"):
        simulate(x0.astype(np.float32), **RUN, store=RunFile(tmp_path / "a.h5", store_dtype="float64"))


def test_result_store_waits_for_a_file_locked_by_another_process(tmp_path):
    path = tmp_path / "sweep.h5"
    store = ResultStore(path, {"n": 1})
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); print('locked', flush=True); time.sleep(1.0)",
            str(path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        store.save("beta=1", counts=np.arange(3))  # waits for the lock, then writes
        assert store.done("beta=1")
    finally:
        holder.kill()
        holder.wait()
    impatient = ResultStore(path, {"n": 1}, lock_timeout=0.2)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); print('locked', flush=True); time.sleep(5.0)",
            str(path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        holder.stdout.readline()
        with pytest.raises(RuntimeError, match="in use by another process"):
            impatient.save("beta=2", counts=np.arange(3))
    finally:
        holder.kill()
        holder.wait()


def test_result_store_save_waits_for_a_read_in_another_thread(tmp_path):
    # HDF5 refuses to open a file for appending while this process has it open read-only;
    # a sweep that saves while the user polls the store from another thread must wait.
    import threading

    import h5py

    path = tmp_path / "sweep.h5"
    store = ResultStore(path, {"n": 1})
    store.save("beta=1", counts=np.arange(3))
    opened, release = threading.Event(), threading.Event()

    def read():
        with h5py.File(path, "r"):
            opened.set()
            release.wait(5.0)

    reader = threading.Thread(target=read)
    reader.start()
    opened.wait(5.0)
    threading.Timer(0.3, release.set).start()
    store.save("beta=2", counts=np.arange(3))
    reader.join()
    assert store.done("beta=2") and len(store) == 2
