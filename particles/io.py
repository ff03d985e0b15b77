r"""HDF5 storage of runs and sweep results; the only module that knows the file layout.

A trajectory file follows H5MD 1.1 (de Buyl, Colberg & Höfling, 2014), the community HDF5
layout for particle trajectories::

    /h5md                             attrs version = [1, 1], particles_schema = "trajectory",
                                            particles_schema_version = 1
      /author, /creator               attrs name (creator: "attention-dynamics", its version)
    /particles/tokens
      /box                            attrs dimension = d, boundary = ["none"] * d
      /position                       a time-dependent element:
        /value                        (frames, [batch,] n, d) storage dtype, chunked, compressed
        /step                         (frames,) int64, index of the frame on the step grid
        /time                         (frames,) float64
    /parameters                       attrs: every scalar field of SimulationParams (beta,
                                            t_max, dt, dynamics, method, save_every, rtol,
                                            atol, dtype), store_dtype, package_version, seed
                                            (only when known)
      /x0                             ([batch,] n, d) in the run's dtype
      /Q, /K, /V                      (d, d) or (batch, d, d) float64; absent means identity
      /checkpoint                     the last flushed state, to resume exactly:
        /state                        (2, [batch,] n, d) run dtype, two slots written in turn
        /frame                        (2,) int64, the frame index held by each slot (-1: none)
        /checksum                     (2, 32) uint8, BLAKE2b of each slot's (frame, time of
                                            that frame, state), written with the slot
    /observables/<name>               per-frame quantities, each a time-dependent element
      /value, /step, /time              (value: (frames, ...)), attrs on the group

Deviations from H5MD: ``value`` may carry a leading batch axis (independent systems share
one file; H5MD has one system per particle group); the storage dtype may be float32 for a
float64 run; ``/parameters/checkpoint`` is ours.

Crash safety. A file is created under a temporary name and renamed into place complete, so
``path`` never holds a half-made layout. A frame counts as written once it is in ``step``:
each flush writes ``value`` first, then ``time`` and ``step``, then one checkpoint slot, so
``len(step)`` frames are always complete on disk. The slots alternate per flush: a flush
writes the slot that does not hold the newest checkpoint, which therefore stays intact
whatever is cut. A slot counts only if its checksum matches its (frame, time, state), its
frame is complete on disk and the stored frame equals its state (rounded to the storage
dtype); a torn slot fails this test. Resume starts from the newest slot that passes it,
from ``x0`` if no frame beyond the first is complete, and refuses the file otherwise
(``repair`` rebuilds the checkpoint from the stored frames).

Writing uses HDF5's single-writer/multiple-reader mode (SWMR): another process can read the
file while a run writes it, and a writer killed at any moment leaves a file that opens,
with every frame up to its last flush. Resuming such a file first copies its content into a
fresh file (HDF5 marks a file whose writer never closed it; only a copy clears that mark),
then continues from the checkpoint. Cutting the writer after every single HDF5 call of a
short run leaves either the uninterrupted run after resume or a refusal
(tests/particles/test_io_faults.py).

Sweep results (``ResultStore``) share ``/h5md`` and ``/parameters`` (the sweep's config);
each finished piece of work is a group ``/results/<key>``; whole-sweep arrays go to
``/observables/<name>``.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import numbers
import os
import queue
import struct
import threading
import time as _time
import warnings
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from ._checks import check_dtype, check_real
from ._params import SimulationParams, _same
from ._trajectory import Trajectory

__all__ = [
    "load",
    "save",
    "simulate_to_store",
    "info",
    "last_state",
    "write_observable",
    "read_observable",
    "repair",
    "ResultStore",
    "LazyFrames",
    "Observable",
    "StoreError",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1
H5MD_VERSION = np.array([1, 1], dtype=np.int32)
CREATOR = "attention-dynamics"
COMPRESSIONS = ("gzip", "lzf", None)
# gzip level 1: higher levels cost time for little size on these floats.
GZIP_LEVEL = 1
# No compression by default: on the authors' workload at save_every = 1, lzf saves ~18% of
# a float64 file (gzip ~27%) but writes at ~100 (~45) MB/s against ~650 MB/s without, which
# costs far more than the 10% of simulation time allowed for storing (bench_io.py).
# float32 storage halves the file at little cost.
DEFAULT_COMPRESSION = None
DEFAULT_FLUSH_EVERY = 5.0

_POS = "particles/tokens/position"
_VALUE, _STEP, _TIME = f"{_POS}/value", f"{_POS}/step", f"{_POS}/time"
_CKPT = "parameters/checkpoint"
_DIGEST_BYTES = 32
# Chunks of ~1 MiB read and compress well; one system's block of a chunk stays <= 64 KiB
# so that reading one system over all frames reads a small part of the file.
_CHUNK_BYTES = 1 << 20
_SYSTEM_BLOCK_BYTES = 1 << 16
# The chunk cache must hold one time-block of chunks (all batch blocks), or each frame
# written would recompress partly filled chunks.
_CACHE_BYTES = 64 << 20
_PARAM_ARRAYS = ("Q", "K", "V")
# Seconds a reader waits for a file locked by a writer outside SWMR (a ResultStore save).
_READ_LOCK_TIMEOUT = 10.0
_LOCKED = "unable to lock file"  # HDF5's message when another process holds the file
_READ_HERE = "already open for read-only"  # ...when this process is reading it


class _NotStored(KeyError):
    """A missing key or observable (a KeyError that ``_h5_errors`` lets through)."""


class StoreError(ValueError):
    """A file that is not a readable store of this package: truncated, damaged, written by
    another program or with another schema version. The message names the file and the
    problem; the HDF5 error, if any, is chained as ``__cause__``."""


# --------------------------------------------------------------------------- writing runs


def simulate_to_store(
    x0,
    params,
    path,
    *,
    progress=False,
    resume=False,
    overwrite=False,
    store_dtype=None,
    compression=DEFAULT_COMPRESSION,
    flush_every=DEFAULT_FLUSH_EVERY,
    seed=None,
):
    """Run ``params`` from ``x0`` and write every frame to ``path`` as it is computed.

    ``particles.simulate(..., store=path)`` calls this; call it directly for the options
    ``simulate`` does not forward (compression, flush interval, seed).

    Resuming continues from the checkpoint of the last completed flush, which holds the
    state in the run's dtype: a resumed "euler" or "rk4" run is bit for bit the
    uninterrupted one, also with float32 storage, wherever the writer was cut. "dopri5"
    chooses a fresh starting step at the resumed frame, so its frames agree with the
    uninterrupted run to the tolerances, not bit for bit.

    Args:
        x0: ([batch,] n, d) validated initial state, in the run's dtype.
        params: ``SimulationParams`` of the run.
        path: file to write (str or os.PathLike).
        progress: show a progress bar.
        resume: continue the run stored in ``path`` from its last complete frame (a
            missing file starts a new run). The stored parameters, ``x0`` and storage
            dtype must equal the given ones.
        overwrite: replace an existing file. Without ``resume`` or ``overwrite``, an
            existing file is an error.
        store_dtype: None (the run's dtype), "float64" or "float32": dtype of the stored
            frames. float32 halves the size of a float64 run.
        compression: None (default: fastest), "lzf" (~18% smaller on the authors'
            workload, ~6x slower to write) or "gzip" (level 1, ~27% smaller, ~15x slower);
            both with the shuffle filter. Every chunk carries a Fletcher-32 checksum.
        flush_every: seconds of work between flushes to disk, > 0. Frames are also flushed
            after the first frame and at the end.
        seed: the seed that produced ``x0``, stored when given (int or str).

    Returns:
        ``Trajectory`` read back from the file (``xs`` lazy, in the storage dtype).

    Raises:
        FileExistsError: ``path`` exists and neither ``resume`` nor ``overwrite`` is set.
        ValueError: resuming with a different parameter (named in the message), or bad
            arguments; ``StoreError`` (a ValueError) for unreadable files and for files
            whose checkpoint does not verify (see ``repair``), left as they were.
        RuntimeError: another process is writing ``path``.
    """
    from ._simulate import run

    if not isinstance(params, SimulationParams):
        raise TypeError(f"params must be a SimulationParams, got {type(params).__name__}")
    path = _check_path(path)
    run_dtype = np.dtype(params.dtype)
    if x0.dtype != run_dtype:
        raise ValueError(f"x0 must have the run's dtype {run_dtype}, got {x0.dtype}")
    store_dtype = run_dtype if store_dtype is None else check_dtype("store_dtype", store_dtype)
    if store_dtype.itemsize > run_dtype.itemsize:
        raise ValueError(
            f"store_dtype must not be wider than the run's dtype {run_dtype}, "
            f"got {store_dtype}: it would only waste space"
        )
    _check_compression(compression)
    flush_every = check_real("flush_every", flush_every, low=0.0, low_inclusive=False)
    if seed is not None and not isinstance(seed, (numbers.Integral, str)):
        raise TypeError(f"seed must be an int, a str or None, got {type(seed).__name__}")
    for name, flag in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")
    if resume and overwrite:
        raise ValueError(
            "resume and overwrite exclude each other: resume=True continues the stored run, overwrite=True replaces it"
        )

    start, newest_slot = None, None
    if path.exists() and resume:
        f, start, newest_slot = _open_to_resume(path, x0, params, store_dtype)
    else:
        if path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{path} exists; pass resume=True to continue the run it holds or overwrite=True to replace it"
                )
            _check_not_being_written(path)
        _create_run_file(path, x0, params, store_dtype, compression, seed)
        with _h5_errors(path, "open for writing"):
            f = _open_to_append(path, x0.shape, store_dtype)
    if start is not None and start[0] == len(params.frame_steps()) - 1:
        if f is not None:
            f.close()
        return load(path)
    writer = _RunWriter(f, path, params, flush_every, newest_slot)
    try:
        for t, x in run(x0, params, progress=progress, start=start, in_span=False):
            writer.append(t, x)
    finally:
        # Also after an exception in the run: flush the frames computed so far (resume
        # continues from them), then close.
        error = writer.close()
    if error is not None:
        raise RuntimeError(f"writing {path} failed: {error}") from error
    return load(path)


class _RunWriter:
    """Appends frames to an open run file in SWMR mode, in a thread of its own.

    h5py releases the GIL while HDF5 compresses and writes, so the next frames are computed
    meanwhile. A bounded queue (~64 MiB of frames) keeps memory in check when the disk is
    the slower side. Flushes happen in a fixed order (see the module docstring).
    """

    def __init__(self, f, path, params, flush_every, newest_slot):
        self.f, self.path, self.flush_every = f, path, flush_every
        self.value, self.step_ds, self.time_ds = f[_VALUE], f[_STEP], f[_TIME]
        self.ckpt = f[_CKPT]
        # The slot of the newest checkpoint, None while no slot holds one: never written.
        self.newest_slot = newest_slot
        self.frame_steps = params.frame_steps()
        self.count = self.step_ds.shape[0]
        self.pending_t = []
        self.last_x = None
        self.error = None
        self.last_flush = _time.monotonic()
        # Opened in SWMR mode (see _open_to_append): no object may be created; readers may
        # open the file.
        assert f.swmr_mode
        # HDF5 drops its own lock in SWMR mode; ours tells resume/overwrite that a writer
        # is alive. Shared, so that readers who lock are not blocked.
        self.lock_fd = os.open(path, os.O_RDONLY)
        fcntl.flock(self.lock_fd, fcntl.LOCK_SH)
        frame_bytes = max(1, self.value.dtype.itemsize * int(np.prod(self.value.shape[1:])))
        self.queue = queue.Queue(maxsize=max(2, _CACHE_BYTES // frame_bytes))
        self.thread = threading.Thread(target=self._work, name=f"write {path}", daemon=True)
        self.thread.start()

    def append(self, t, x):
        """Queue frame (t, x); x must not be modified afterwards (``run`` yields copies)."""
        self._put((t, x))

    def close(self):
        """Write and flush every queued frame, close the file; returns the writer's error."""
        try:
            if self.thread.is_alive():
                self._put(None, raise_error=False)
                self.thread.join()
            self.f.close()
        finally:
            os.close(self.lock_fd)
        return self.error

    def _put(self, item, raise_error=True):
        while self.thread.is_alive():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if raise_error and self.error is not None:
            raise RuntimeError(f"writing {self.path} failed: {self.error}") from self.error

    def _work(self):
        try:
            while (item := self.queue.get()) is not None:
                self._write(*item)
            self._flush()
        except BaseException as e:  # handed to the main thread
            self.error = e

    def _write(self, t, x):
        k = self.count + len(self.pending_t)
        self.value.resize(k + 1, axis=0)
        self.value[k] = x.astype(self.value.dtype, copy=False)  # numpy rounds to nearest
        self.pending_t.append(t)
        self.last_x = x
        if k == 0 or _time.monotonic() - self.last_flush >= self.flush_every:
            self._flush()

    def _flush(self):
        if not self.pending_t:
            return
        k0, k1 = self.count, self.count + len(self.pending_t)
        # value before step: a reader (or a resume) trusts len(step) frames only.
        self.value.flush()
        self.time_ds.resize(k1, axis=0)
        self.time_ds[k0:k1] = self.pending_t
        self.step_ds.resize(k1, axis=0)
        self.step_ds[k0:k1] = self.frame_steps[k0:k1]
        self.time_ds.flush()
        self.step_ds.flush()
        # The other slot than the newest checkpoint's: a cut anywhere in this write leaves
        # that one intact, and this one failing its checksum.
        slot = 0 if self.newest_slot is None else 1 - self.newest_slot
        _write_checkpoint(self.ckpt, slot, k1 - 1, self.pending_t[-1], self.last_x)
        self.f.flush()
        self.newest_slot = slot
        self.count, self.pending_t = k1, []
        self.last_flush = _time.monotonic()


def _create_run_file(path, x0, params, store_dtype, compression, seed, fill=None):
    """Write the layout of a new run (then ``fill(f)``, if given) under a temporary name and
    rename it to ``path``: a cut leaves no half-made file at ``path``."""
    frame_shape = x0.shape
    tmp = path.with_name(path.name + ".create-tmp")
    with _h5_errors(path, "create"):
        f = h5py.File(tmp, "w", libver="latest", **_cache_kwargs(frame_shape, store_dtype))
    try:
        _write_h5md(f, "trajectory")
        tokens = f.create_group("particles/tokens")
        box = tokens.create_group("box")
        d = frame_shape[-1]
        box.attrs["dimension"] = np.int32(d)
        box.attrs["boundary"] = np.array(["none"] * d, dtype=h5py.string_dtype())
        chunks = _frame_chunks(frame_shape, store_dtype, len(params.frame_steps()))
        filters = _filters(compression)
        pos = tokens.create_group("position")
        # fletcher32: a checksum per chunk, so damaged frames raise instead of reading as
        # plausible numbers.
        value = pos.create_dataset(
            "value",
            shape=(0,) + frame_shape,
            dtype=store_dtype,
            maxshape=(None,) + frame_shape,
            chunks=chunks,
            fletcher32=True,
            **filters,
        )
        value.attrs["unit"] = "1"  # unit vectors: dimensionless
        n_t = min(4096, len(params.frame_steps()))
        pos.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(n_t,))
        pos.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(n_t,))
        _write_params(f, params, x0, store_dtype, seed)
        _create_checkpoint(f, frame_shape, x0.dtype)
        f.create_group("observables")
        if fill is not None:
            with _h5_errors(path, "write"):
                fill(f)
        f.close()
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _open_to_append(path, frame_shape, store_dtype):
    """Open a run file for writing directly in SWMR mode: opened first and switched after, a
    cut in between left it marked as open for writing without SWMR, which no reader opens.

    Raises:
        OSError: HDF5's, for instance when the file is marked as being written.
    """
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    cache = _cache_kwargs(frame_shape, store_dtype)
    fapl.set_cache(fapl.get_cache()[0], cache["rdcc_nslots"], cache["rdcc_nbytes"], cache["rdcc_w0"])
    flags = h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE
    return h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl=fapl))


def _create_checkpoint(f, frame_shape, dtype):
    ckpt = f.require_group(_CKPT)
    ckpt.create_dataset("state", shape=(2,) + tuple(frame_shape), dtype=dtype)
    ckpt.create_dataset("frame", data=np.array([-1, -1], dtype=np.int64))
    ckpt.create_dataset("checksum", shape=(2, _DIGEST_BYTES), dtype=np.uint8)


def _checkpoint_digest(frame, t, state):
    """BLAKE2b of (frame, t, state): binds a state to the frame it was written for."""
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    h.update(np.array([frame], dtype="<i8").tobytes())
    h.update(np.array([t], dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(state, dtype=state.dtype.newbyteorder("<")).data)
    return np.frombuffer(h.digest(), dtype=np.uint8)


def _write_checkpoint(ckpt, slot, frame, t, state):
    # Any order: the slot counts only once all three agree.
    ckpt["state"][slot] = state
    ckpt["frame"][slot] = frame
    ckpt["checksum"][slot] = _checkpoint_digest(frame, t, state)


def _clear_checkpoint_slot(ckpt, slot):
    ckpt["frame"][slot] = -1
    ckpt["checksum"][slot] = np.zeros(_DIGEST_BYTES, np.uint8)


class _Checkpoint(NamedTuple):
    frame: int
    t: float
    state: np.ndarray
    slot: int


def _newest_checkpoint(f, path):
    """The newest checkpoint slot that verifies (see the module docstring), or None when no
    frame beyond the first is complete (the run restarts from x0, exactly).

    Raises:
        StoreError: frames beyond the first are complete but no slot verifies; the message
            says why for each slot and how to recover.
    """
    ckpt = f[_CKPT]
    m = min(f[_STEP].shape[0], f[_TIME].shape[0], f[_VALUE].shape[0])
    if "checksum" not in ckpt:
        problems = ["the file predates checkpoint checksums"]
    else:
        frames, sums = ckpt["frame"][:], ckpt["checksum"][:]
        problems = []
        for slot in np.argsort(-frames, kind="stable"):
            slot, k = int(slot), int(frames[slot])
            if k < 0:
                problems.append(f"slot {slot} is empty")
                continue
            if k >= m:
                problems.append(f"slot {slot} names frame {k}, but {m} frames are complete")
                continue
            state, t = ckpt["state"][slot], float(f[_TIME][k])
            if not np.array_equal(_checkpoint_digest(k, t, state), sums[slot]):
                problems.append(f"slot {slot} (frame {k}) fails its checksum: a torn write")
                continue
            stored = f[_VALUE][k]
            if stored.tobytes() != state.astype(stored.dtype).tobytes():
                problems.append(f"slot {slot} differs from the stored frame {k}")
                continue
            return _Checkpoint(k, t, state, slot)
    if m <= 1:
        return None
    raise StoreError(
        f"cannot resume {path}: no checkpoint verifies ({'; '.join(problems)}), "
        f"so the state to continue its {m} frames from is unknown. The frames "
        f"still load with particles.load. Call particles.io.repair(path) to "
        f"rebuild the checkpoint from the stored frames, then resume; or start a "
        f"fresh run with overwrite=True"
    )


def _write_params(f, params, x0, store_dtype, seed):
    group = f.create_group("parameters")
    for field in dataclasses.fields(SimulationParams):
        value = getattr(params, field.name)
        if field.name in _PARAM_ARRAYS:
            if value is not None:
                group.create_dataset(field.name, data=value)
        else:
            group.attrs[field.name] = value
    group.attrs["store_dtype"] = str(store_dtype)
    group.attrs["package_version"] = _package_version()
    if seed is not None:
        group.attrs["seed"] = seed
    group.create_dataset("x0", data=x0)


def _open_to_resume(path, x0, params, store_dtype):
    """Open a run file for appending after checking that it holds this run; returns the
    open file, ``start = (frame, t, x)`` for ``run`` (None: from frame 0) and the slot of
    that checkpoint (None: none)."""
    _check_not_being_written(path)
    with _open_read(path) as f:
        _check_schema(f, path, "trajectory")
        stored, stored_x0, stored_dtype = _read_params(f, path)
    diffs = _param_diff(stored, params)
    if not diffs and not (
        stored_x0.shape == x0.shape and stored_x0.dtype == x0.dtype and np.array_equal(stored_x0, x0)
    ):
        diffs = ["x0"]
    if not diffs and stored_dtype != store_dtype:
        diffs = [f"store_dtype (stored {stored_dtype}, given {store_dtype})"]
    if diffs:
        raise ValueError(
            f"cannot resume {path}: parameter {diffs[0]} differs from the stored "
            f"run; pass the stored parameters, or overwrite=True to start anew"
        )
    total = len(params.frame_steps())
    # Checked before anything is written: a refused file stays as it was.
    with _open_read(path) as f, _h5_errors(path, "read"):
        checkpoint = _newest_checkpoint(f, path)
        lengths = {f[name].shape[0] for name in (_VALUE, _STEP, _TIME)}
    if checkpoint is not None and checkpoint.frame == total - 1:
        return None, (total - 1, None, None), checkpoint.slot  # finished: nothing to write
    # Frames after the checkpoint are dropped, and recomputed bit for bit the same.
    keep = 0 if checkpoint is None else checkpoint.frame + 1
    copy = lengths != {keep}
    if not copy:
        try:
            f = _open_to_append(path, x0.shape, store_dtype)
        except OSError as e:
            if "already open for" not in str(e):
                raise StoreError(f"cannot open {path} for resuming: it is damaged ({e})") from e
            copy = True
    if copy:
        # A killed writer's mark blocks opening for writing, and shrinking a dataset in
        # place may zero its last frames on disk before its new length gets there: a copy,
        # cut to the checkpoint, replaces the file in one step.
        _copy_clean(path, frames=keep)
        with _h5_errors(path, "open for resuming"):
            f = _open_to_append(path, x0.shape, store_dtype)
    try:
        with _h5_errors(path, "read"):
            checkpoint = _newest_checkpoint(f, path)
            if {f[name].shape[0] for name in (_VALUE, _STEP, _TIME)} != {keep} or (
                checkpoint is not None and checkpoint.frame != keep - 1
            ):
                raise StoreError(f"{path} changed while resuming; resume again")
    except BaseException:
        f.close()
        raise
    if checkpoint is None:
        return f, None, None
    return f, (checkpoint.frame, checkpoint.t, checkpoint.state), checkpoint.slot


def _param_diff(stored, given):
    """Names (with both values) of the fields where two SimulationParams differ."""
    diffs = []
    for field in dataclasses.fields(SimulationParams):
        a, b = getattr(stored, field.name), getattr(given, field.name)
        if not _same(a, b):
            shown = (
                ("an array", "another array")
                if isinstance(a, np.ndarray) or isinstance(b, np.ndarray)
                else (repr(a), repr(b))
            )
            diffs.append(f"{field.name!r} (stored {shown[0]}, given {shown[1]})")
    return diffs


def _check_not_being_written(path):
    """RuntimeError if a live writer holds our lock on ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeError(
            f"{path} is being written by another process; wait for it to finish or stop it first"
        ) from None
    finally:
        os.close(fd)  # closing releases the lock


def repair(path):
    """Make a file whose writer was killed writable and resumable again, keeping its frames.

    HDF5 marks a file as open for (SWMR) writing until its writer closes it; after a kill
    the mark stays and HDF5 refuses to open the file for writing. The content readable in
    SWMR mode is copied into a fresh file that then replaces ``path`` (atomically, via a
    temporary file in the same directory). ``simulate(..., resume=True)`` does this copy
    itself.

    A run file whose checkpoint does not verify (which resume refuses) gets a new one, with
    a RuntimeWarning: the last stored frame when frames are stored in the run's dtype (that
    frame is the exact state), else ``x0`` at frame 0 (resume then recomputes the frames,
    bit for bit the same). Either way resume continues the stored run, never another one.

    Args:
        path: the file (str or os.PathLike).

    Raises:
        RuntimeError: another process is writing the file.
        StoreError: the file cannot be read.
    """
    _copy_clean(path, rebuild_checkpoint=True)


def _copy_clean(path, frames=None, rebuild_checkpoint=False):
    """Replace ``path`` by a copy of its content, with the frames of a run file cut to the
    complete ones (at most ``frames``), via a temporary file and one rename."""
    path = _check_path(path)
    _check_not_being_written(path)
    tmp = path.with_name(path.name + ".repair-tmp")
    with _open_read(path) as src:
        with _h5_errors(path, "repair"):
            with h5py.File(tmp, "w", libver="latest") as dst:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                for name in src:
                    src.copy(src[name], dst, name)
                if _STEP in dst:
                    m = dst[_STEP].shape[0] if frames is None else frames
                    for name in (_VALUE, _TIME, _STEP):
                        dst[name].resize(min(m, dst[name].shape[0]), axis=0)
                if "results/.pending" in dst:
                    del dst["results/.pending"]
                if rebuild_checkpoint and _CKPT in dst:
                    _rebuild_checkpoint(dst, path)
    os.replace(tmp, path)


def _rebuild_checkpoint(f, path):
    """A verified checkpoint for a run file whose checkpoint does not verify."""
    try:
        _newest_checkpoint(f, path)
        return
    except StoreError as e:
        problem = str(e)
    ckpt = f[_CKPT]
    if "checksum" not in ckpt:
        ckpt.create_dataset("checksum", shape=(2, _DIGEST_BYTES), dtype=np.uint8)
    m = min(f[name].shape[0] for name in (_VALUE, _STEP, _TIME))
    value, state = f[_VALUE], ckpt["state"]
    if value.dtype == state.dtype:
        k, x = m - 1, value[m - 1]
        source = f"the stored frame {k}"
    else:
        # Rounded frames cannot restart the run exactly; x0 can.
        k, x = 0, f["parameters/x0"][()]
        source = f"x0 (frame 0; {value.dtype} frames are rounded, resume recomputes them)"
    _write_checkpoint(ckpt, 0, k, float(f[_TIME][k]), x)
    _clear_checkpoint_slot(ckpt, 1)
    warnings.warn(f"{path}: rebuilt the checkpoint from {source}. It was: {problem}", RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------- reading runs


class LazyFrames:
    """The frames (m, [batch,] n, d) of a stored run, read from the file on each access.

    Indexing reads only the selected part (``xs[10:20]``, ``xs[:, 3]`` for one system,
    ``xs[-1]``); ``np.asarray(xs)`` reads everything. The file is opened per access and
    closed again, so it stays free for writers (``write_observable``) and for a run that
    is still appending to it. ``m`` is the number of frames complete when loaded.
    """

    def __init__(self, path, m, frame_shape, dtype):
        self.path = path
        self.shape = (m,) + tuple(frame_shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self):
        return len(self.shape)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"LazyFrames({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __iter__(self):
        # Blocks of frames: one file open per block instead of per frame.
        block = max(1, _CHUNK_BYTES // max(1, int(np.prod(self.shape[1:])) * self.dtype.itemsize))
        for k0 in range(0, len(self), block):
            yield from self[k0 : min(k0 + block, len(self))]

    def __getitem__(self, index):
        if not isinstance(index, tuple):
            index = (index,)
        if any(i is Ellipsis for i in index[:1]):
            index = (slice(None),) + index
        first, rest = index[0], index[1:]
        m = len(self)
        post = None
        if isinstance(first, (numbers.Integral, np.integer)) and not isinstance(first, bool):
            k = int(first) + (m if first < 0 else 0)
            if not 0 <= k < m:
                raise IndexError(f"frame index {first} out of range for {m} frames")
            sel = k
        elif isinstance(first, slice):
            start, stop, step = first.indices(m)
            if step > 0:
                sel = slice(start, max(start, stop), step)
            else:
                # h5py reads increasing selections only: read forward, then reverse.
                ks = np.arange(start, stop, step)
                sel = slice(int(ks[-1]), int(ks[0]) + 1, -step) if ks.size else slice(0, 0)
                post = slice(None, None, -1)
        else:
            ks = np.asarray(first)
            if ks.dtype == bool:
                ks = np.flatnonzero(ks)
            ks = np.where(ks < 0, ks + m, ks).astype(np.int64)
            if ks.size and (ks.min() < 0 or ks.max() >= m):
                raise IndexError(f"frame indices out of range for {m} frames")
            uniq, inverse = np.unique(ks, return_inverse=True)
            sel = list(uniq)
            post = inverse
        with _open_read(self.path) as f:
            with _h5_errors(self.path, "read frames from"):
                if isinstance(sel, list) and not sel:
                    out = np.empty((0,) + self.shape[1:], self.dtype)[(slice(None),) + rest]
                else:
                    out = f[_VALUE][(sel,) + rest]
        return out if post is None else out[post]


def load(path):
    """Read a stored run.

    Works on a finished file, on a file a run is still writing (the frames complete at
    this moment; call again to see more) and on a file whose writer was killed.

    Args:
        path: a file written by ``simulate(..., store=path)`` or ``save``.

    Returns:
        ``Trajectory`` with ``ts`` (m,), ``params`` and lazy ``xs`` (m, [batch,] n, d) in
        the storage dtype (a ``LazyFrames``: slicing reads only the slice).

    Raises:
        FileNotFoundError: no such file.
        StoreError: not a trajectory file of this package, or damaged.

    Example:
        >>> traj = load("run.h5")
        >>> x = traj.xs[-1]          # reads one frame
        >>> first_system = traj.xs[:, 0]
    """
    path = _check_path(path)
    with _open_read(path) as f:
        _check_schema(f, path, "trajectory")
        params, x0, store_dtype = _read_params(f, path)
        with _h5_errors(path, "read"):
            value = f[_VALUE]
            m = min(f[_STEP].shape[0], f[_TIME].shape[0], value.shape[0])
            ts = f[_TIME][:m]
            frame_shape, dtype = value.shape[1:], value.dtype
    if frame_shape != x0.shape:
        raise StoreError(f"{path} is damaged: frames have shape {frame_shape} but x0 {x0.shape}")
    return Trajectory(ts=ts, xs=LazyFrames(path, m, frame_shape, dtype), params=params)


def info(path):
    """Progress and provenance of a stored run.

    Returns:
        dict with ``frames`` (complete frames), ``total`` (frames of the finished run),
        ``complete`` (bool), ``store_dtype``, ``package_version``, ``seed`` (None if
        unknown), ``creator`` and ``observables`` (names).
    """
    path = _check_path(path)
    with _open_read(path) as f:
        _check_schema(f, path, "trajectory")
        params, _, store_dtype = _read_params(f, path)
        with _h5_errors(path, "read"):
            m = min(f[_STEP].shape[0], f[_TIME].shape[0], f[_VALUE].shape[0])
            attrs = f["parameters"].attrs
            total = len(params.frame_steps())
            return dict(
                frames=int(m),
                total=total,
                complete=m == total,
                store_dtype=str(store_dtype),
                package_version=_py(attrs.get("package_version")),
                seed=_py(attrs["seed"]) if "seed" in attrs else None,
                creator=f"{_py(f['h5md/creator'].attrs['name'])} {_py(f['h5md/creator'].attrs['version'])}",
                observables=sorted(f.get("observables", {})),
            )


def last_state(path):
    """The last flushed state in the run's full precision (also for float32 storage).

    Returns:
        (frame, t, x): frame index, its time and the ([batch,] n, d) state in the run's
        dtype. For a complete run this is the final state, bit for bit.

    Raises:
        StoreError: no checkpoint verifies (see ``repair``), or none was written yet.
    """
    path = _check_path(path)
    with _open_read(path) as f:
        _check_schema(f, path, "trajectory")
        with _h5_errors(path, "read"):
            checkpoint = _newest_checkpoint(f, path)
    if checkpoint is None:
        raise StoreError(f"{path} holds no checkpoint yet (no flush completed)")
    return checkpoint.frame, checkpoint.t, checkpoint.state


def save(path, trajectory, *, store_dtype=None, compression=DEFAULT_COMPRESSION, seed=None, overwrite=False):
    """Write an in-memory ``Trajectory`` (from ``simulate`` without ``store``) to a file.

    Args:
        path: file to write.
        trajectory: a complete ``Trajectory``; its first frame is the run's x0.
        store_dtype, compression, seed: as in ``simulate_to_store``.
        overwrite: replace an existing file.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: the trajectory does not match its params (frame count, dtype).
    """
    if not isinstance(trajectory, Trajectory):
        raise TypeError(f"trajectory must be a Trajectory, got {type(trajectory).__name__}")
    params = trajectory.params
    path = _check_path(path)
    xs = trajectory.xs
    total = len(params.frame_steps())
    if len(trajectory.ts) != total or len(xs) != total:
        raise ValueError(
            f"trajectory must hold the {total} frames of its params, got "
            f"{len(trajectory.ts)} times and {len(xs)} frames"
        )
    if np.dtype(xs.dtype) != np.dtype(params.dtype):
        raise ValueError(f"trajectory.xs must have the run's dtype {params.dtype}, got {xs.dtype}")
    store_dtype = np.dtype(params.dtype) if store_dtype is None else check_dtype("store_dtype", store_dtype)
    _check_compression(compression)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        _check_not_being_written(path)
    ts = np.asarray(trajectory.ts, dtype=np.float64)

    def fill(f):
        f[_VALUE].resize(total, axis=0)
        for k0 in range(0, total, 64):
            f[_VALUE][k0 : k0 + 64] = np.asarray(xs[k0 : k0 + 64])
        f[_TIME].resize(total, axis=0)
        f[_TIME][:] = ts
        f[_STEP].resize(total, axis=0)
        f[_STEP][:] = params.frame_steps()
        _write_checkpoint(f[_CKPT], 0, total - 1, ts[-1], np.asarray(xs[total - 1]))

    _create_run_file(path, np.asarray(xs[0]), params, store_dtype, compression, seed, fill)


# --------------------------------------------------------------------------- observables


class Observable(NamedTuple):
    """A per-frame quantity read back from a trajectory file."""

    value: np.ndarray
    time: np.ndarray
    step: np.ndarray
    attrs: dict


def write_observable(path, name, values, attrs=None, *, overwrite=False):
    """Add a per-frame quantity (cluster counts, energy, curvature...) to a trajectory file.

    Stored as the H5MD time-dependent element ``/observables/<name>`` with ``value``,
    ``step`` and ``time`` (copies of the position's) and ``attrs`` on the group.

    Args:
        path: a trajectory file whose writer has finished (or was killed and repaired).
        name: observable name, a non-empty str without "/".
        values: (frames, ...) array, one entry per complete frame of the file.
        attrs: optional dict of str keys to scalars, strings or small arrays (units,
            method, parameters of the analysis).
        overwrite: replace an existing observable of that name.

    Raises:
        ValueError: bad name, or ``values`` does not have one entry per frame.
        FileExistsError: the observable exists and ``overwrite`` is False.
        StoreError: the file is not a trajectory file or cannot be written.
    """
    path = _check_path(path)
    name = _check_name("name", name)
    values = np.asarray(values)
    if values.ndim < 1:
        raise ValueError("values must have shape (frames, ...), got a scalar")
    if values.dtype == object:
        raise TypeError("values must be a numeric or bool array, got dtype object")
    attrs = _check_attrs("attrs", attrs)
    with _open_write(path) as f:
        _check_schema(f, path, "trajectory")
        with _h5_errors(path, "write an observable to"):
            m = f[_STEP].shape[0]
            if values.shape[0] != m:
                raise ValueError(
                    f"values must have one entry per frame: the file holds {m} "
                    f"frames, got values of shape {values.shape}"
                )
            obs = f.require_group("observables")
            if name in obs:
                if not overwrite:
                    raise FileExistsError(f"observable {name!r} exists in {path}; pass overwrite=True to replace it")
                del obs[name]
            group = obs.create_group(name)
            group.create_dataset("value", data=values, **_array_filters(values))
            group.create_dataset("step", data=f[_STEP][:m])
            group.create_dataset("time", data=f[_TIME][:m])
            for key, value in attrs.items():
                group.attrs[key] = value


def read_observable(path, name):
    """Read back a per-frame quantity written by ``write_observable``.

    Returns:
        ``Observable(value, time, step, attrs)``.

    Raises:
        KeyError: no observable of that name (the message lists the existing ones).
    """
    path = _check_path(path)
    name = _check_name("name", name)
    with _open_read(path) as f:
        _check_schema(f, path, "trajectory")
        obs = f.get("observables")
        if obs is None or name not in obs:
            have = sorted(obs) if obs is not None else []
            raise _NotStored(f"no observable {name!r} in {path}; it holds {have}")
        with _h5_errors(path, "read an observable from"):
            group = obs[name]
            return Observable(
                value=group["value"][()],
                time=group["time"][()],
                step=group["step"][()],
                attrs={k: _py(v) for k, v in group.attrs.items()},
            )


# --------------------------------------------------------------------------- sweep results


class ResultStore:
    """Results of a sweep (phase diagram, parameter scans), one group per finished piece.

    Layout: ``/h5md`` (``particles_schema = "results"``), ``/parameters`` (the sweep's
    config), ``/results/<key>`` (one finished piece of work: arrays as datasets, scalars
    and strings as attributes), ``/observables/<name>`` (whole-sweep arrays).

    The file is opened for each operation and closed again, so other programs can read it
    between saves and several processes can share it (HDF5's file lock serialises them;
    a busy file is retried for ``lock_timeout`` seconds). ``save`` writes the piece into
    ``/results/.pending/<key>``, then renames it into place in the same HDF5 transaction
    that closes the file: a key is ``done`` only once complete and closed. A kill during
    the few milliseconds of a close may damage the file; everything else leaves every
    saved key readable.

    Args:
        path: file (created if missing).
        config: flat dict (str keys) describing the sweep: scalars, strings, None or
            numeric arrays. Reopening an existing file with another config is a
            ValueError naming the first differing key.
        overwrite: replace an existing file.
        lock_timeout: seconds to wait for a file locked by another process.

    Example:
        >>> store = ResultStore("phase.h5", {"n": 32, "d": 2, "betas": betas})
        >>> for beta in betas:
        ...     key = f"beta={beta:g}"
        ...     if store.done(key):
        ...         continue
        ...     store.save(key, clusters=counts, beta=beta)
        >>> store.load("beta=1").keys()
    """

    def __init__(self, path, config, *, overwrite=False, lock_timeout=60.0):
        self.path = _check_path(path)
        self._config = _check_config(config)
        self.lock_timeout = check_real("lock_timeout", lock_timeout, low=0.0)
        if self.path.exists() and overwrite:
            self.path.unlink()
        if not self.path.exists():
            tmp = self.path.with_name(self.path.name + ".create-tmp")
            with _h5_errors(self.path, "create"):
                with h5py.File(tmp, "w", libver=("earliest", "v108")) as f:
                    _write_h5md(f, "results")
                    group = f.create_group("parameters")
                    for key, value in self._config.items():
                        _put(group, key, value)
                    group.attrs[".package_version"] = _package_version()
                    f.create_group("results", track_order=True)
                    f.create_group("observables")
            # Atomic: a kill during creation leaves no half-made store behind.
            os.replace(tmp, self.path)
            return
        with _open_read(self.path) as f:
            _check_schema(f, self.path, "results")
            stored = _get_all(f["parameters"])
        stored.pop(".package_version", None)
        for key in sorted(set(stored) | set(self._config)):
            if key not in stored or key not in self._config or not _same_config_value(stored[key], self._config[key]):
                raise ValueError(
                    f"config differs from the one stored in {self.path} at key {key!r}: "
                    f"stored {stored.get(key, '<missing>')!r}, given "
                    f"{self._config.get(key, '<missing>')!r}; use another file or "
                    f"overwrite=True"
                )

    @classmethod
    def open(cls, path, *, lock_timeout=60.0):
        """The existing store at ``path`` with the config stored in it, to read a file alone.

        Raises:
            StoreError: ``path`` is not a result store of this package.
        """
        path = _check_path(path)
        with _open_read(path) as f:
            _check_schema(f, path, "results")
            stored = _get_all(f["parameters"])
        stored.pop(".package_version", None)
        return cls(path, stored, lock_timeout=lock_timeout)

    @property
    def config(self):
        """The sweep's config (a copy)."""
        return dict(self._config)

    def done(self, key):
        """True when ``key`` was saved completely."""
        key = _check_name("key", key)
        with self._read() as f:
            return key in f["results"]

    __contains__ = done

    def keys(self):
        """The saved keys, in the order they were saved."""
        with self._read() as f:
            return [k for k in f["results"] if k != ".pending"]

    def __len__(self):
        return len(self.keys())

    def save(self, key, **values):
        """Store one finished piece of work under ``key``.

        Args:
            key: non-empty str without "/" (e.g. ``f"beta={beta:g}"``).
            **values: arrays (datasets, compressed when large), scalars, strings or None.

        Raises:
            ValueError: ``key`` was already saved (``delete`` it first) or a bad value.
        """
        key = _check_name("key", key)
        values = {name: _check_value(name, value) for name, value in values.items()}
        with self._write() as f:
            results = f["results"]
            if key in results:
                raise ValueError(f"key {key!r} is already saved in {self.path}; delete(key) first to replace it")
            pending = results.require_group(".pending")
            if key in pending:
                del pending[key]  # left over by a killed save
            group = pending.create_group(key)
            for name, value in values.items():
                _put(group, name, value)
            results.move(f".pending/{key}", key)

    def load(self, key):
        """The values saved under ``key`` as a dict (arrays as numpy arrays).

        Raises:
            KeyError: ``key`` was not saved (the message gives the count of saved keys).
        """
        key = _check_name("key", key)
        with self._read() as f:
            if key not in f["results"]:
                raise _NotStored(f"key {key!r} is not saved in {self.path} ({len(f['results'])} keys are)")
            return _get_all(f["results"][key])

    def delete(self, key):
        """Remove a saved key (to recompute it)."""
        key = _check_name("key", key)
        with self._write() as f:
            if key not in f["results"]:
                raise _NotStored(f"key {key!r} is not saved in {self.path}")
            del f["results"][key]

    def save_observable(self, name, value, attrs=None, *, overwrite=False):
        """Store a whole-sweep array (phase diagram, summary table) as ``/observables/<name>``.

        Args:
            name: non-empty str without "/".
            value: array (or scalar).
            attrs: optional dict of scalars, strings or small arrays (axes, units).
            overwrite: replace an existing observable.
        """
        name = _check_name("name", name)
        value = _check_value("value", np.asarray(value))
        attrs = _check_attrs("attrs", attrs)
        with self._write() as f:
            obs = f["observables"]
            if name in obs:
                if not overwrite:
                    raise FileExistsError(
                        f"observable {name!r} exists in {self.path}; pass overwrite=True to replace it"
                    )
                del obs[name]
            group = obs.create_group(name)
            group.create_dataset("value", data=value, **_array_filters(value))
            for k, v in attrs.items():
                group.attrs[k] = v

    def load_observable(self, name):
        """(value, attrs) of a whole-sweep observable."""
        name = _check_name("name", name)
        with self._read() as f:
            if name not in f["observables"]:
                raise _NotStored(f"no observable {name!r} in {self.path}; it holds {sorted(f['observables'])}")
            group = f["observables"][name]
            return group["value"][()], {k: _py(v) for k, v in group.attrs.items()}

    @contextlib.contextmanager
    def _read(self):
        with _open_read(self.path) as f:
            _check_schema(f, self.path, "results")
            with _h5_errors(self.path, "read"):
                yield f

    @contextlib.contextmanager
    def _write(self):
        with _open_write(self.path, lock_timeout=self.lock_timeout) as f:
            _check_schema(f, self.path, "results")
            with _h5_errors(self.path, "write"):
                yield f


# --------------------------------------------------------------------------- helpers


def _package_version():
    from . import __version__

    return __version__


def _write_h5md(f, kind):
    h5md = f.create_group("h5md")
    h5md.attrs["version"] = H5MD_VERSION
    h5md.attrs["particles_schema"] = kind
    h5md.attrs["particles_schema_version"] = np.int32(SCHEMA_VERSION)
    h5md.create_group("author").attrs["name"] = os.environ.get("USER", "unknown")
    creator = h5md.create_group("creator")
    creator.attrs["name"] = CREATOR
    creator.attrs["version"] = _package_version()


def _check_schema(f, path, kind):
    h5md = f.get("h5md")
    attrs = h5md.attrs if isinstance(h5md, h5py.Group) else {}
    if "particles_schema" not in attrs:
        creator = ""
        if isinstance(h5md, h5py.Group) and "creator" in h5md:
            creator = f" (creator: {_py(h5md['creator'].attrs.get('name', '?'))})"
        raise StoreError(
            f"{path} was not written by this package{creator}: no /h5md group with a particles_schema attribute"
        )
    found = _py(attrs["particles_schema"])
    if found != kind:
        raise StoreError(
            f"{path} holds {found!r} data, expected {kind!r} "
            f"({'load' if found == 'trajectory' else 'ResultStore'} reads it)"
        )
    version = _py(attrs.get("particles_schema_version"))
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, this version of the package "
            f"reads version {SCHEMA_VERSION}; use a matching package version"
        )
    if kind == "trajectory":
        for name in (_VALUE, _STEP, _TIME, "parameters", f"{_CKPT}/state", f"{_CKPT}/frame"):
            if name not in f:
                raise StoreError(f"{path} is damaged: /{name} is missing")


def _read_params(f, path):
    group = f["parameters"]
    with _h5_errors(path, "read the parameters of"):
        kwargs = {}
        for field in dataclasses.fields(SimulationParams):
            if field.name in _PARAM_ARRAYS:
                kwargs[field.name] = group[field.name][()] if field.name in group else None
            elif field.name in group.attrs:
                kwargs[field.name] = _py(group.attrs[field.name])
        x0 = group["x0"][()]
        store_dtype = np.dtype(_py(group.attrs["store_dtype"]))
    try:
        params = SimulationParams(**kwargs)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{path} is damaged: its parameters are invalid ({e})") from e
    return params, x0, store_dtype


def _py(value):
    """HDF5 attribute -> plain Python (numpy scalars to Python, bytes to str)."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _put(group, name, value):
    if value is None:
        group.attrs[name] = h5py.Empty("f8")
    elif isinstance(value, np.ndarray):
        group.create_dataset(name, data=value, **_array_filters(value))
    else:
        group.attrs[name] = value


def _get_all(group):
    out = {k: _py(v) for k, v in group.attrs.items()}
    for k, v in group.items():
        if isinstance(v, h5py.Dataset):
            out[k] = v[()]
    return out


def _check_value(name, value):
    if value is None or isinstance(value, (str, bool, numbers.Number, np.generic)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"{name} must be a numeric or bool array, got dtype {value.dtype}")
        return value
    raise TypeError(f"{name} must be a scalar, a str, None or a numeric array, got {type(value).__name__}")


def _check_config(config):
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    out = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
            raise ValueError(f"config keys must be non-empty str without '/' or a leading '.', got {key!r}")
        if isinstance(value, dict):
            raise TypeError(f"config must be flat: config[{key!r}] is a dict")
        out[key] = _check_value(f"config[{key!r}]", value)
    return out


def _same_config_value(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype.kind == b.dtype.kind and np.array_equal(a, b)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _check_attrs(name, attrs):
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise TypeError(f"{name} must be a dict or None, got {type(attrs).__name__}")
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{name} keys must be non-empty str, got {key!r}")
        _check_value(f"{name}[{key!r}]", value)
    return {k: (h5py.Empty("f8") if v is None else v) for k, v in attrs.items()}


def _check_name(argname, name):
    if not isinstance(name, str):
        raise TypeError(f"{argname} must be a str, got {type(name).__name__} {name!r}")
    if not name or "/" in name or name in (".", "..") or name.startswith("."):
        raise ValueError(f"{argname} must be a non-empty str without '/' or a leading '.', got {name!r}")
    return name


def _check_compression(compression):
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ValueError(f"path must be a file, got the directory {path}")
    return path


def _frame_chunks(frame_shape, dtype, total_frames):
    """Chunk of (frames, [systems,] n, d): ~1 MiB, whole frames of small runs."""
    itemsize = np.dtype(dtype).itemsize
    system_bytes = int(np.prod(frame_shape[-2:])) * itemsize
    if len(frame_shape) == 3:
        systems = int(min(frame_shape[0], max(1, _SYSTEM_BLOCK_BYTES // system_bytes)))
        block = (systems,) + tuple(frame_shape[1:])
    else:
        block = tuple(frame_shape)
    block_bytes = int(np.prod(block)) * itemsize
    frame_bytes = int(np.prod(frame_shape)) * itemsize
    frames = max(1, min(_CHUNK_BYTES // block_bytes, (_CACHE_BYTES // 2) // frame_bytes, total_frames))
    return (frames,) + block


def _cache_kwargs(frame_shape, dtype):
    return dict(rdcc_nbytes=_CACHE_BYTES, rdcc_nslots=100_003, rdcc_w0=1.0)


def _filters(compression):
    if compression is None:
        return {}
    if compression == "gzip":
        return dict(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True)
    return dict(compression="lzf", shuffle=True)


def _array_filters(value):
    # Small arrays: contiguous; compression would only add chunk overhead.
    if value.size * value.dtype.itemsize < (64 << 10) or value.ndim == 0:
        return {}
    return dict(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True)


def _superblock_eof(path):
    """End-of-file address stored in a version 2/3 superblock (None for older ones)."""
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 48 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] < 2 or head[9] != 8:
        return None
    base, _, eof = struct.unpack_from("<QQQ", head, 12)
    return base + eof


def _open_retrying(path, mode, timeout):
    """h5py.File(path, mode), waiting up to ``timeout`` seconds while another process holds
    HDF5's lock or another thread reads the file (a ResultStore save or read holds it for
    milliseconds); the OSError otherwise."""
    deadline = _time.monotonic() + timeout
    while True:
        try:
            return h5py.File(path, mode)
        except OSError as e:
            # A read in another thread of this process blocks an append for its
            # milliseconds, just as another process's lock does.
            busy = _LOCKED in str(e) or (mode == "a" and _READ_HERE in str(e))
            if busy and _time.monotonic() < deadline:
                _time.sleep(0.05)
                continue
            raise


@contextlib.contextmanager
def _open_read(path):
    """Open for reading: a finished file, a file being written, or one whose writer died."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not h5py.is_hdf5(path):
        raise StoreError(f"{path} is not an HDF5 file (empty, truncated at the start, or another format)")
    try:
        f = _open_retrying(path, "r", _READ_LOCK_TIMEOUT)
    except OSError as e:
        if _LOCKED in str(e):
            raise RuntimeError(f"cannot open {path}: another process holds it open for writing ({e})") from e
        if "already open for write" not in str(e):
            raise StoreError(f"cannot open {path}: it is truncated or damaged ({e})") from e
        # Marked as being written: a live SWMR writer or one that was killed. SWMR
        # reading retries damaged metadata for a long time, so rule out truncation first.
        eof = _superblock_eof(path)
        if eof is not None and os.path.getsize(path) < eof:
            raise StoreError(
                f"cannot open {path}: it is truncated ({os.path.getsize(path)} bytes, {eof} expected)"
            ) from e
        try:
            f = h5py.File(path, "r", swmr=True)
        except OSError as e2:
            raise StoreError(f"cannot open {path}: it is damaged ({e2})") from e2
    with f:
        yield f


@contextlib.contextmanager
def _open_write(path, lock_timeout=0.0):
    path = _check_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        f = _open_retrying(path, "a", lock_timeout)
    except OSError as e:
        message = str(e)
        if _LOCKED in message:
            raise RuntimeError(f"{path} is in use by another process ({e})") from e
        if "already open for write" in message:
            raise StoreError(
                f"{path} is still being written, or its writer was killed; "
                f"resume the run or call particles.io.repair(path)"
            ) from e
        raise StoreError(f"cannot open {path} for writing: it is truncated or damaged ({e})") from e
    with f:
        yield f


@contextlib.contextmanager
def _h5_errors(path, action):
    """h5py raises KeyError/OSError/RuntimeError from deep inside; name the file instead."""
    try:
        yield
    except (StoreError, _NotStored):
        raise
    except (OSError, KeyError, RuntimeError) as e:
        if isinstance(e, (FileNotFoundError, FileExistsError)):
            raise
        raise StoreError(f"cannot {action} {path}: the file is damaged or incomplete ({type(e).__name__}: {e})") from e
