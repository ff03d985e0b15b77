"""Per-frame quantities (cluster counts, energy, curvature...) stored beside a run's frames."""

from typing import NamedTuple

import numpy as np

from .errors import NotStored
from .locking import check_path, h5_errors, open_read, open_write
from .schema import STEP, TIME, array_filters, check_attrs, check_name, check_schema, to_python


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
    path = check_path(path)
    name = check_name("name", name)
    values = np.asarray(values)
    if values.ndim < 1:
        raise ValueError("values must have shape (frames, ...), got a scalar")
    if values.dtype == object:
        raise TypeError("values must be a numeric or bool array, got dtype object")
    attrs = check_attrs("attrs", attrs)
    with open_write(path) as f:
        check_schema(f, path, "trajectory")
        with h5_errors(path, "write an observable to"):
            m = f[STEP].shape[0]
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
            group.create_dataset("value", data=values, **array_filters(values))
            group.create_dataset("step", data=f[STEP][:m])
            group.create_dataset("time", data=f[TIME][:m])
            for key, value in attrs.items():
                group.attrs[key] = value


def read_observable(path, name):
    """Read back a per-frame quantity written by ``write_observable``.

    Returns:
        ``Observable(value, time, step, attrs)``.

    Raises:
        KeyError: no observable of that name (the message lists the existing ones).
    """
    path = check_path(path)
    name = check_name("name", name)
    with open_read(path) as f:
        check_schema(f, path, "trajectory")
        obs = f.get("observables")
        if obs is None or name not in obs:
            have = sorted(obs) if obs is not None else []
            raise NotStored(f"no observable {name!r} in {path}; it holds {have}")
        with h5_errors(path, "read an observable from"):
            group = obs[name]
            return Observable(
                value=group["value"][()],
                time=group["time"][()],
                step=group["step"][()],
                attrs={k: to_python(v) for k, v in group.attrs.items()},
            )
