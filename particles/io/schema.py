r"""The file layout: H5MD groups, schema and version checks, run parameters, plain values.

A trajectory file follows H5MD 1.1 (de Buyl, Colberg & Höfling, 2014), the community HDF5
layout for particle trajectories::

    /h5md                             attrs version = [1, 1], particles_schema = "trajectory",
                                            particles_schema_version = 1, kind = "run",
                                            created (ISO 8601 UTC; kind and created are
                                            absent from files of earlier versions)
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

Density trajectories of the mean-field solver (``particles_schema = "density"``) share
``/h5md`` and ``/parameters`` and keep their frames in ``/fields/density`` (see ``density``).

Sweep results (``ResultStore``) share ``/h5md`` (``particles_schema = "results"``, ``kind``
the sweep's kind, e.g. "phase_diagram", and ``created``) and ``/parameters`` (the sweep's
config); each finished piece of work is a group ``/results/<key>``; whole-sweep arrays go to
``/observables/<name>``. ``file_kind`` reads the kind, also of files written before it was
stored.
"""

import dataclasses
import datetime
import importlib.metadata
import numbers
import os

import h5py
import numpy as np

from .._params import SimulationParams, _same
from .errors import StoreError
from .locking import h5_errors

SCHEMA_VERSION = 1
H5MD_VERSION = np.array([1, 1], dtype=np.int32)
CREATOR = "attention-dynamics"
# gzip level 1: higher levels cost time for little size on these floats.
GZIP_LEVEL = 1

POSITION = "particles/tokens/position"
VALUE, STEP, TIME = f"{POSITION}/value", f"{POSITION}/step", f"{POSITION}/time"
CHECKPOINT = "parameters/checkpoint"
PARAM_ARRAYS = ("Q", "K", "V")


def package_version():
    return importlib.metadata.version(CREATOR)


# The kind of a trajectory file; a ResultStore without one of its own is "results".
RUN_KIND, RESULTS_KIND = "run", "results"
# The kind of a phase-diagram sweep (``particles.PhaseDiagramStore``).
PHASE_DIAGRAM_KIND = "phase_diagram"
# Schema and kind of a density trajectory (``particles.mean_field.solve``, ``density``).
DENSITY_KIND = "density"


def write_h5md(f, schema, kind):
    """The /h5md group: H5MD version, our schema ("trajectory" or "results"), the file's
    kind (what ``particles.load`` turns it into) and its creation time."""
    h5md = f.create_group("h5md")
    h5md.attrs["version"] = H5MD_VERSION
    h5md.attrs["particles_schema"] = schema
    h5md.attrs["particles_schema_version"] = np.int32(SCHEMA_VERSION)
    h5md.attrs["kind"] = kind
    h5md.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    h5md.create_group("author").attrs["name"] = os.environ.get("USER", "unknown")
    creator = h5md.create_group("creator")
    creator.attrs["name"] = CREATOR
    creator.attrs["version"] = package_version()


def stored_schema(f, path):
    """The schema of ``f``, "trajectory" or "results"; StoreError unless written by this
    package with this schema version."""
    h5md = f.get("h5md")
    attrs = h5md.attrs if isinstance(h5md, h5py.Group) else {}
    if "particles_schema" not in attrs:
        creator = ""
        if isinstance(h5md, h5py.Group) and "creator" in h5md:
            creator = f" (creator: {to_python(h5md['creator'].attrs.get('name', '?'))})"
        raise StoreError(
            f"{path} was not written by this package{creator}: no /h5md group with a particles_schema attribute"
        )
    version = to_python(attrs.get("particles_schema_version"))
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, this version of the package "
            f"reads version {SCHEMA_VERSION}; use a matching package version"
        )
    return to_python(attrs["particles_schema"])


def check_schema(f, path, kind):
    """StoreError unless ``f`` holds ``kind`` ("trajectory" or "results") data of this
    schema version (and, for a trajectory, every dataset a reader needs)."""
    found = stored_schema(f, path)
    if found != kind:
        reader = "particles.io.load" if found == "trajectory" else "particles.io.ResultStore"
        raise StoreError(
            f"{path} holds {found!r} data, expected {kind!r}: {reader} reads it, and particles.load reads any "
            f"file of this package"
        )
    if kind == "trajectory":
        for name in (VALUE, STEP, TIME, "parameters", f"{CHECKPOINT}/state", f"{CHECKPOINT}/frame"):
            if name not in f:
                raise StoreError(f"{path} is damaged: /{name} is missing")


def file_kind(f, path):
    """What ``f`` holds: "run" for a trajectory, else the kind of its sweep.

    Read from the /h5md ``kind`` attribute; files written before it existed are recognised
    by their layout: a config entry "kind" or "study" (the studies' stores), a config with
    "betas" and "draw_key" (a phase diagram), else "results".
    """
    schema = stored_schema(f, path)
    kind = to_python(f["h5md"].attrs.get("kind"))
    if kind is not None:
        return kind
    if schema == "trajectory":
        return RUN_KIND
    with h5_errors(path, "read the config of"):
        config = f["parameters"].attrs if "parameters" in f else {}
        for key in ("kind", "study"):
            if key in config and isinstance(to_python(config[key]), str):
                return to_python(config[key])
        if "draw_key" in config and "betas" in f.get("parameters", {}):
            return PHASE_DIAGRAM_KIND
    return RESULTS_KIND


def write_params(f, params, x0, store_dtype, seed):
    group = f.create_group("parameters")
    for field in dataclasses.fields(SimulationParams):
        value = getattr(params, field.name)
        if field.name in PARAM_ARRAYS:
            if value is not None:
                group.create_dataset(field.name, data=value)
        else:
            group.attrs[field.name] = value
    group.attrs["store_dtype"] = str(store_dtype)
    group.attrs["package_version"] = package_version()
    if seed is not None:
        group.attrs["seed"] = seed
    group.create_dataset("x0", data=x0)


def read_params(f, path):
    """(SimulationParams, x0, storage dtype) of a trajectory file."""
    group = f["parameters"]
    with h5_errors(path, "read the parameters of"):
        kwargs = {}
        for field in dataclasses.fields(SimulationParams):
            if field.name in PARAM_ARRAYS:
                kwargs[field.name] = group[field.name][()] if field.name in group else None
            elif field.name in group.attrs:
                kwargs[field.name] = to_python(group.attrs[field.name])
        x0 = group["x0"][()]
        store_dtype = np.dtype(to_python(group.attrs["store_dtype"]))
    try:
        params = SimulationParams(**kwargs)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{path} is damaged: its parameters are invalid ({e})") from e
    return params, x0, store_dtype


def param_diff(stored, given):
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


# --------------------------------------------------------------------------- plain values


def to_python(value):
    """HDF5 attribute -> plain Python (numpy scalars to Python, bytes to str)."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def put_value(group, name, value):
    """A checked value into ``group``: arrays as datasets, the rest as attributes."""
    if value is None:
        group.attrs[name] = h5py.Empty("f8")
    elif isinstance(value, np.ndarray):
        group.create_dataset(name, data=value, **array_filters(value))
    else:
        group.attrs[name] = value


def get_values(group):
    """Everything ``put_value`` wrote into ``group``, as a dict."""
    out = {k: to_python(v) for k, v in group.attrs.items()}
    for k, v in group.items():
        if isinstance(v, h5py.Dataset):
            out[k] = v[()]
    return out


def array_filters(value):
    # Small arrays: contiguous; compression would only add chunk overhead.
    if value.size * value.dtype.itemsize < (64 << 10) or value.ndim == 0:
        return {}
    return dict(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True)


def check_value(name, value):
    if value is None or isinstance(value, (str, bool, numbers.Number, np.generic)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"{name} must be a numeric or bool array, got dtype {value.dtype}")
        return value
    raise TypeError(f"{name} must be a scalar, a str, None or a numeric array, got {type(value).__name__}")


def check_config(config):
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    out = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
            raise ValueError(f"config keys must be non-empty str without '/' or a leading '.', got {key!r}")
        if isinstance(value, dict):
            raise TypeError(f"config must be flat: config[{key!r}] is a dict")
        out[key] = check_value(f"config[{key!r}]", value)
    return out


def same_config_value(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype.kind == b.dtype.kind and np.array_equal(a, b)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def check_attrs(name, attrs):
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise TypeError(f"{name} must be a dict or None, got {type(attrs).__name__}")
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{name} keys must be non-empty str, got {key!r}")
        check_value(f"{name}[{key!r}]", value)
    return {k: (h5py.Empty("f8") if v is None else v) for k, v in attrs.items()}


def check_name(argname, name):
    if not isinstance(name, str):
        raise TypeError(f"{argname} must be a str, got {type(name).__name__} {name!r}")
    if not name or "/" in name or name in (".", "..") or name.startswith("."):
        raise ValueError(f"{argname} must be a non-empty str without '/' or a leading '.', got {name!r}")
    return name
