r"""Density trajectories of the mean-field solver (``particles.mean_field.solve``).

Layout (H5MD-style, ``particles_schema = "density"``)::

    /h5md                         attrs version, particles_schema = "density", kind =
                                        "density", particles_schema_version, created,
                                        /author, /creator
    /parameters                   the solver's parameters: scalars and strings as attrs
                                        (beta, t_max, dynamics, cfl, ...), arrays as
                                        datasets (rho0 (M,), save_times (F,), Q, K, V when
                                        given); None as an empty attribute
    /fields/density               a time-dependent element on the uniform grid:
      /theta                      (M,) float64, cell centres theta_k = 2 pi k / M
      /value                      (frames, M) float64, cell averages of rho(theta, t)
      /step                       (frames,) int64, solver steps taken up to the frame
      /time                       (frames,) float64, written last: a frame counts once its
                                        time is on disk

Frames are appended and flushed one at a time, so a run cut at any point keeps every
frame whose time was written; ``DensityWriter`` reopens such a file and reports the last
complete frame, from which the solver continues (the state is stored in full precision, so
a resumed run equals the uninterrupted one bit for bit).
"""

from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from .errors import StoreError
from .locking import check_path, h5_errors, open_read
from .schema import (
    DENSITY_KIND,
    check_config,
    check_schema,
    get_values,
    put_value,
    same_config_value,
    to_python,
    write_h5md,
)

KIND = DENSITY_KIND
FIELD = "fields/density"


class DensityTrajectory(NamedTuple):
    """A density trajectory read back from its file."""

    ts: np.ndarray
    theta: np.ndarray
    rho: np.ndarray
    steps: np.ndarray
    params: dict


def _complete(group):
    return min(group["time"].shape[0], group["value"].shape[0], group["step"].shape[0])


class DensityWriter:
    """Append the frames of one solver run to ``path``; resume an existing file.

    Args:
        path: the HDF5 file (created when missing).
        theta: (M,) grid; params: flat dict of the run's parameters (``rho0``,
            ``save_times`` and the scalars), compared with a stored file's before resuming.
        overwrite: replace an existing file instead of resuming it.

    Attributes:
        frames: number of complete frames on disk.
        last: (t, rho, step) of the last complete frame, or None.

    Raises:
        ValueError: the file holds a run with other parameters (naming the first one).
        StoreError: the file is not a density file of this package.
    """

    def __init__(self, path, theta, params, *, overwrite=False):
        self.path = check_path(path)
        params = check_config(params)
        if self.path.exists() and overwrite:
            self.path.unlink()
        if not self.path.exists():
            self._create(theta, params)
        self._f = None
        with h5_errors(self.path, "open"):
            self._f = h5py.File(self.path, "a")
        try:
            check_schema(self._f, self.path, KIND)
            stored = get_values(self._f["parameters"])
            for key in sorted(set(stored) | set(params)):
                if key.startswith(".") or key == "package_version":
                    continue
                if key not in stored or key not in params or not same_config_value(stored[key], params[key]):
                    raise ValueError(
                        f"{self.path} holds a run with other parameters: {key} is "
                        f"{_show(stored.get(key, '<missing>'))} there, {_show(params.get(key, '<missing>'))} "
                        f"here; pass overwrite=True or another path"
                    )
            group = self._f[FIELD]
            self.frames = _complete(group)
            self.last = None
            if self.frames:
                k = self.frames - 1
                self.last = (float(group["time"][k]), group["value"][k], int(group["step"][k]))
        except BaseException:
            self.close()
            raise

    def _create(self, theta, params):
        tmp = self.path.with_name(self.path.name + ".create-tmp")
        with h5_errors(self.path, "create"):
            with h5py.File(tmp, "w") as f:
                write_h5md(f, KIND, KIND)
                group = f.create_group("parameters")
                for key, value in params.items():
                    put_value(group, key, value)
                field = f.create_group(FIELD)
                M = len(theta)
                field.create_dataset("theta", data=np.asarray(theta, dtype=np.float64))
                chunk = max(1, min(256, (1 << 20) // (8 * M)))
                field.create_dataset("value", shape=(0, M), maxshape=(None, M), dtype=np.float64, chunks=(chunk, M))
                field.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
                field.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        tmp.replace(self.path)

    def append(self, t, rho, step):
        """Write one frame and flush it (the time last: it marks the frame complete)."""
        group = self._f[FIELD]
        k = self.frames
        with h5_errors(self.path, "write"):
            for name in ("value", "step", "time"):
                group[name].resize(k + 1, axis=0)
            group["value"][k] = rho
            group["step"][k] = step
            group["time"][k] = t
            self._f.flush()
        self.frames = k + 1
        self.last = (float(t), rho, int(step))

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_density(path):
    """The complete frames of a density file.

    Returns:
        ``DensityTrajectory(ts (T,), theta (M,), rho (T, M), steps (T,), params dict)``.
    """
    path = check_path(path)
    with open_read(path) as f:
        check_schema(f, path, KIND)
        with h5_errors(path, "read"):
            group = f[FIELD]
            m = _complete(group)
            return DensityTrajectory(
                ts=group["time"][:m],
                theta=group["theta"][()],
                rho=group["value"][:m],
                steps=group["step"][:m],
                params=get_values(f["parameters"]),
            )


def density_info(f, path):
    """``particles.io.info``'s facts of an open density file: frames, total, complete."""
    check_schema(f, path, KIND)
    with h5_errors(path, "read"):
        m = _complete(f[FIELD])
        params = f["parameters"]
        total = int(params["save_times"].shape[0]) if "save_times" in params else None
        return dict(
            frames=int(m),
            total=total,
            complete=m == total,
            package_version=to_python(f["h5md/creator"].attrs["version"]),
            seed=None,
        )


def is_density_file(path):
    """True when ``path`` is an HDF5 file with the density layout."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with open_read(path) as f:
            check_schema(f, path, KIND)
    except StoreError:
        return False
    return True


def _show(value):
    return "an array" if isinstance(value, np.ndarray) else repr(value)
