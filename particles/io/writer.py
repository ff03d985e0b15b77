"""Writing runs: the ``RunFile`` options of ``simulate(store=...)``, the threaded SWMR
writer that ``simulate``'s time loop hands its frames to, and ``save`` of an in-memory run.

Crash safety. A file is created under a temporary name and renamed into place complete, so
``path`` never holds a half-made layout. A frame counts as written once it is in ``step``:
each flush writes ``value`` first, then ``time`` and ``step``, then one checkpoint slot, so
``len(step)`` frames are always complete on disk (see ``checkpoint`` for the slots).
Writing uses HDF5's single-writer/multiple-reader mode (SWMR): another process can read the
file while a run writes it, and a writer killed at any moment leaves a file that opens,
with every frame up to its last flush (``resume`` continues it). Cutting the writer after
every single HDF5 call of a short run leaves either the uninterrupted run after resume or
a refusal (tests/particles/test_io_faults.py).
"""

import dataclasses
import numbers
import os
import queue
import threading
import time
from typing import Optional, Union

import numpy as np

from .._trajectory import Trajectory
from ..checks import check_dtype, check_real
from .checkpoint import write_checkpoint
from .layout import CACHE_BYTES, DEFAULT_COMPRESSION, check_compression, create_run_file, open_to_append
from .locking import check_not_being_written, check_path, h5_errors, hold_writer_lock
from .resume import open_to_resume
from .schema import CHECKPOINT, STEP, TIME, VALUE

DEFAULT_FLUSH_EVERY = 5.0


@dataclasses.dataclass(frozen=True)
class RunFile:
    """Where and how a run is stored: the ``store`` of ``particles.simulate``.

    ``simulate(x0, ..., store=RunFile("run.h5", store_dtype="float32"))`` writes every frame
    to the file as it is computed; ``store="run.h5"`` is short for ``RunFile("run.h5")``.

    Resuming continues from the checkpoint of the last completed flush, which holds the
    state in the run's dtype: a resumed "euler" or "rk4" run is bit for bit the
    uninterrupted one, also with float32 storage, wherever the writer was cut. "dopri5"
    chooses a fresh starting step at the resumed frame, so its frames agree with the
    uninterrupted run to the tolerances, not bit for bit.

    Attributes:
        path: file to write (str or os.PathLike).
        store_dtype: None (the run's dtype), "float64" or "float32": dtype of the stored
            frames. float32 halves the size of a float64 run.
        compression: None (default: fastest), "lzf" (~18% smaller on the authors'
            workload, ~6x slower to write) or "gzip" (level 1, ~27% smaller, ~15x slower);
            both with the shuffle filter. Every chunk carries a Fletcher-32 checksum.
        flush_every: seconds of work between flushes to disk, > 0. Frames are also flushed
            after the first frame and at the end.
        seed: the seed that produced ``x0``, stored when given (int or str).
        resume: continue the run stored in ``path`` from its last complete frame (a
            missing file starts a new run). The stored parameters, ``x0`` and storage
            dtype must equal the given ones.
        overwrite: replace an existing file. Without ``resume`` or ``overwrite``, an
            existing file is an error.
    """

    path: Union[str, os.PathLike]
    store_dtype: Optional[str] = dataclasses.field(default=None, kw_only=True)
    compression: Optional[str] = dataclasses.field(default=DEFAULT_COMPRESSION, kw_only=True)
    flush_every: float = dataclasses.field(default=DEFAULT_FLUSH_EVERY, kw_only=True)
    seed: Union[int, str, None] = dataclasses.field(default=None, kw_only=True)
    resume: bool = dataclasses.field(default=False, kw_only=True)
    overwrite: bool = dataclasses.field(default=False, kw_only=True)

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("path", check_path(self.path))
        if self.store_dtype is not None:
            set_("store_dtype", check_dtype("store_dtype", self.store_dtype))
        check_compression(self.compression)
        set_("flush_every", check_real("flush_every", self.flush_every, low=0.0, low_inclusive=False))
        if self.seed is not None and not isinstance(self.seed, (numbers.Integral, str)):
            raise TypeError(f"seed must be an int, a str or None, got {type(self.seed).__name__}")
        for name in ("resume", "overwrite"):
            flag = getattr(self, name)
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")
        if self.resume and self.overwrite:
            raise ValueError(
                "resume and overwrite exclude each other: resume=True continues the stored run, "
                "overwrite=True replaces it"
            )


def open_run(store, x0, params):
    """The ``RunWriter`` for the run (``x0``, ``params``) described by ``store``.

    Args:
        store: a ``RunFile``, or a path (``RunFile(path)``).
        x0: ([batch,] n, d) validated initial state, in the run's dtype.
        params: the run's ``SimulationParams``.

    Raises:
        FileExistsError: the file exists and neither ``resume`` nor ``overwrite`` is set.
        ValueError: resuming with a different parameter (named in the message), or bad
            arguments; ``StoreError`` (a ValueError) for unreadable files and for files
            whose checkpoint does not verify (see ``repair``), left as they were.
        RuntimeError: another process is writing the file.
    """
    if not isinstance(store, RunFile):
        store = RunFile(store)
    path, run_dtype = store.path, np.dtype(params.dtype)
    if x0.dtype != run_dtype:
        raise ValueError(f"x0 must have the run's dtype {run_dtype}, got {x0.dtype}")
    store_dtype = run_dtype if store.store_dtype is None else store.store_dtype
    if store_dtype.itemsize > run_dtype.itemsize:
        raise ValueError(
            f"store_dtype must not be wider than the run's dtype {run_dtype}, "
            f"got {store_dtype}: it would only waste space"
        )
    if path.exists() and store.resume:
        f, start, newest_slot = open_to_resume(path, x0, params, store_dtype)
        if f is None:
            return RunWriter(None, path, params, store.flush_every, newest_slot, start)
    else:
        if path.exists():
            if not store.overwrite:
                raise FileExistsError(
                    f"{path} exists; pass resume=True to continue the run it holds or overwrite=True to replace it"
                )
            check_not_being_written(path)
        create_run_file(path, x0, params, store_dtype, store.compression, store.seed)
        with h5_errors(path, "open for writing"):
            f = open_to_append(path)
        start, newest_slot = None, None
    return RunWriter(f, path, params, store.flush_every, newest_slot, start)


class RunWriter:
    """Appends the frames of a run to its open file in SWMR mode, in a thread of its own.

    h5py releases the GIL while HDF5 compresses and writes, so the next frames are computed
    meanwhile. A bounded queue (~64 MiB of frames) keeps memory in check when the disk is
    the slower side. Use as a context manager: leaving it flushes the frames appended so
    far (also after an exception in the run: resume continues from them) and closes.

    Attributes:
        path: the file.
        start: None (the run starts at frame 0) or ``(frame, t, x)``, the checkpoint to
            continue from: the first frame to append is the one after it.
        complete: the file already holds the whole run (nothing to append).
    """

    def __init__(self, f, path, params, flush_every, newest_slot, start):
        self.f, self.path, self.flush_every = f, path, flush_every
        self.start = start
        self.frame_steps = params.frame_steps()
        self.complete = start is not None and start[0] == len(self.frame_steps) - 1
        if self.complete:
            return
        self.value, self.step_ds, self.time_ds = f[VALUE], f[STEP], f[TIME]
        self.ckpt = f[CHECKPOINT]
        # The slot of the newest checkpoint, None while no slot holds one: never written.
        self.newest_slot = newest_slot
        self.count = self.step_ds.shape[0]
        self.pending_t = []
        self.last_x = None
        self.error = None
        self.last_flush = time.monotonic()
        # Opened in SWMR mode (see open_to_append): no object may be created; readers may
        # open the file.
        assert f.swmr_mode
        self.lock_fd = hold_writer_lock(path)
        frame_bytes = max(1, self.value.dtype.itemsize * int(np.prod(self.value.shape[1:])))
        self.queue = queue.Queue(maxsize=max(2, CACHE_BYTES // frame_bytes))
        self.thread = threading.Thread(target=self._work, name=f"write {path}", daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        error = self.close()
        if exc_type is None and error is not None:
            raise RuntimeError(f"writing {self.path} failed: {error}") from error
        return False

    def append(self, t, x):
        """Queue frame (t, x); x must not be modified afterwards (``run`` yields copies)."""
        self._put((t, x))

    def close(self):
        """Write and flush every queued frame, close the file; returns the writer's error."""
        if self.complete:
            return None
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
        if k == 0 or time.monotonic() - self.last_flush >= self.flush_every:
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
        write_checkpoint(self.ckpt, slot, k1 - 1, self.pending_t[-1], self.last_x)
        self.f.flush()
        self.newest_slot = slot
        self.count, self.pending_t = k1, []
        self.last_flush = time.monotonic()


def save(path, trajectory, *, store_dtype=None, compression=DEFAULT_COMPRESSION, seed=None, overwrite=False):
    """Write an in-memory ``Trajectory`` (from ``simulate`` without ``store``) to a file.

    Args:
        path: file to write.
        trajectory: a complete ``Trajectory``; its first frame is the run's x0.
        store_dtype, compression, seed: as in ``RunFile``.
        overwrite: replace an existing file.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: the trajectory does not match its params (frame count, dtype).
    """
    if not isinstance(trajectory, Trajectory):
        raise TypeError(f"trajectory must be a Trajectory, got {type(trajectory).__name__}")
    params = trajectory.params
    path = check_path(path)
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
    check_compression(compression)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        check_not_being_written(path)
    ts = np.asarray(trajectory.ts, dtype=np.float64)

    def fill(f):
        f[VALUE].resize(total, axis=0)
        for k0 in range(0, total, 64):
            f[VALUE][k0 : k0 + 64] = np.asarray(xs[k0 : k0 + 64])
        f[TIME].resize(total, axis=0)
        f[TIME][:] = ts
        f[STEP].resize(total, axis=0)
        f[STEP][:] = params.frame_steps()
        write_checkpoint(f[CHECKPOINT], 0, total - 1, ts[-1], np.asarray(xs[total - 1]))

    create_run_file(path, np.asarray(xs[0]), params, store_dtype, compression, seed, fill)
