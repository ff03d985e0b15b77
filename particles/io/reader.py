"""Reading stored runs: ``load`` (frames read lazily), ``info`` and ``last_state``."""

import numbers
from collections.abc import Mapping

import numpy as np

from .._trajectory import Trajectory
from .checkpoint import complete_frames, newest_checkpoint
from .density import density_info
from .errors import StoreError
from .layout import CHUNK_BYTES
from .locking import check_path, h5_errors, open_read
from .observables import read_observable
from .results import ResultStore
from .schema import (
    DENSITY_KIND,
    PHASE_DIAGRAM_KIND,
    RUN_KIND,
    TIME,
    VALUE,
    check_schema,
    file_kind,
    read_params,
    to_python,
)


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
        block = max(1, CHUNK_BYTES // max(1, int(np.prod(self.shape[1:])) * self.dtype.itemsize))
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
        with open_read(self.path) as f:
            with h5_errors(self.path, "read frames from"):
                if isinstance(sel, list) and not sel:
                    out = np.empty((0,) + self.shape[1:], self.dtype)[(slice(None),) + rest]
                else:
                    out = f[VALUE][(sel,) + rest]
        return out if post is None else out[post]


class StoredObservables(Mapping):
    """The per-frame quantities of a run file, name -> ``Observable``, each read when accessed
    (the names are those present when the run was loaded)."""

    def __init__(self, path, names):
        self.path = path
        self._names = tuple(names)

    def __getitem__(self, name):
        if name not in self._names:
            raise KeyError(f"no observable {name!r} in {self.path}; it holds {list(self._names)}")
        return read_observable(self.path, name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __repr__(self):
        return f"StoredObservables({str(self.path)!r}, {list(self._names)})"


def load(path):
    """Read a stored run.

    Works on a finished file, on a file a run is still writing (the frames complete at
    this moment; call again to see more) and on a file whose writer was killed.

    Args:
        path: a file written by ``simulate(..., store=path)`` or ``save``.

    Returns:
        ``Trajectory`` with ``ts`` (m,), ``params``, lazy ``xs`` (m, [batch,] n, d) in the
        storage dtype (a ``LazyFrames``: slicing reads only the slice) and ``observables``
        (name -> ``Observable``, read on access).

    Raises:
        FileNotFoundError: no such file.
        StoreError: not a trajectory file of this package, or damaged.

    Example:
        >>> from particles import sample_sphere, simulate
        >>> _ = simulate(sample_sphere(8, 3, seed=0), beta=1.0, t_max=1.0, dt=0.1, store="run.h5")
        >>> traj = load("run.h5")
        >>> x = traj.xs[-1]  # reads one frame
        >>> x.shape
        (8, 3)
    """
    path = check_path(path)
    with open_read(path) as f:
        check_schema(f, path, "trajectory")
        params, x0, store_dtype = read_params(f, path)
        with h5_errors(path, "read"):
            value = f[VALUE]
            m = complete_frames(f)
            ts = f[TIME][:m]
            frame_shape, dtype = value.shape[1:], value.dtype
            names = sorted(f.get("observables", {}))
    if frame_shape != x0.shape:
        raise StoreError(f"{path} is damaged: frames have shape {frame_shape} but x0 {x0.shape}")
    return Trajectory(
        ts=ts,
        xs=LazyFrames(path, m, frame_shape, dtype),
        params=params,
        observables=StoredObservables(path, names),
    )


def kind(path):
    """What a file of this package holds: "run" (a trajectory, ``load``), "phase_diagram"
    (``particles.PhaseDiagramStore``) or the kind of another sweep (a ``ResultStore``,
    e.g. a study's "hessian_growth"; "results" when it names none).

    Raises:
        FileNotFoundError: no such file.
        StoreError: not a file of this package.
    """
    path = check_path(path)
    with open_read(path) as f:
        return file_kind(f, path)


def info(path):
    """What a file of this package holds, its progress and its provenance.

    Works on every file the package writes: runs (``simulate(store=...)``, ``save``), phase
    diagrams and other sweeps (``ResultStore``, the studies' files).

    Returns:
        dict with, for every file: ``kind`` (see ``kind``), ``created`` (ISO 8601 UTC; None
        for files written before it was recorded), ``package_version``, ``creator``,
        ``seed`` (None where none was given or recorded) and ``observables`` (names).
        A run adds ``frames`` (complete frames), ``total`` (frames of the finished run),
        ``complete`` (bool) and ``store_dtype``. A sweep adds ``config`` (flat dict) and
        ``saved`` (finished pieces); a phase diagram also ``total`` (betas) and ``complete``.
        A density trajectory (``particles.mean_field.solve(store=...)``) adds ``frames``,
        ``total`` (save times) and ``complete``.

    Example:
        >>> from particles import RunFile, sample_sphere, simulate
        >>> x0 = sample_sphere(8, 3, seed=7)
        >>> _ = simulate(x0, beta=1.0, t_max=1.0, dt=0.1, store=RunFile("seeded.h5", seed=7))
        >>> facts = info("seeded.h5")
        >>> facts["kind"], facts["seed"], facts["frames"], facts["complete"]
        ('run', 7, 11, True)
    """
    path = check_path(path)
    with open_read(path) as f:
        found = file_kind(f, path)
        with h5_errors(path, "read"):
            h5md = f["h5md"]
            common = dict(
                kind=found,
                created=to_python(h5md.attrs.get("created")),
                creator=f"{to_python(h5md['creator'].attrs['name'])} {to_python(h5md['creator'].attrs['version'])}",
                observables=sorted(f.get("observables", {})),
            )
        if found == DENSITY_KIND:
            return dict(common, **density_info(f, path))
        if found == RUN_KIND:
            check_schema(f, path, "trajectory")
            params, _, store_dtype = read_params(f, path)
            with h5_errors(path, "read"):
                m = complete_frames(f)
                attrs = f["parameters"].attrs
                total = len(params.frame_steps())
                return dict(
                    common,
                    frames=int(m),
                    total=total,
                    complete=m == total,
                    store_dtype=str(store_dtype),
                    package_version=to_python(attrs.get("package_version")),
                    seed=to_python(attrs["seed"]) if "seed" in attrs else None,
                )
    store = ResultStore(path)
    config = store.config
    with open_read(path) as f, h5_errors(path, "read"):
        version = to_python(f["parameters"].attrs.get(".package_version"))
    seed = config.get("seed")
    out = dict(
        common,
        package_version=version,
        seed=seed if isinstance(seed, (int, str)) and not isinstance(seed, bool) else None,
        config=config,
        saved=len(store),
    )
    if found == PHASE_DIAGRAM_KIND and "betas" in config:
        out["total"] = int(np.size(config["betas"]))
        out["complete"] = out["saved"] == out["total"]
    return out


def last_state(path):
    """The last flushed state in the run's full precision (also for float32 storage).

    Returns:
        (frame, t, x): frame index, its time and the ([batch,] n, d) state in the run's
        dtype. For a complete run this is the final state, bit for bit.

    Raises:
        StoreError: no checkpoint verifies (see ``repair``), or none was written yet.
    """
    path = check_path(path)
    with open_read(path) as f:
        check_schema(f, path, "trajectory")
        with h5_errors(path, "read"):
            checkpoint = newest_checkpoint(f, path)
    if checkpoint is None:
        raise StoreError(f"{path} holds no checkpoint yet (no flush completed)")
    return checkpoint.frame, checkpoint.t, checkpoint.state
