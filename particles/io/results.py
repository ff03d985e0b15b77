"""``ResultStore``: the results of a sweep, one group per finished piece of work."""

import contextlib
import dataclasses
import os
from pathlib import Path

import h5py
import numpy as np

from ..checks import check_real
from .errors import NotStored
from .locking import check_path, h5_errors, open_read, open_write
from .schema import (
    RESULTS_KIND,
    array_filters,
    check_attrs,
    check_config,
    check_name,
    check_schema,
    check_value,
    file_kind,
    get_values,
    package_version,
    put_value,
    same_config_value,
    to_python,
    write_h5md,
)


class ResultStore:
    """Results of a sweep (phase diagram, parameter scans), one group per finished piece.

    Layout: ``/h5md`` (``particles_schema = "results"``, ``kind``, ``created``),
    ``/parameters`` (the sweep's config), ``/results/<key>`` (one finished piece of work: arrays as datasets, scalars
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
            ValueError naming the first differing key. None opens an existing file with
            the config stored in it (to read a sweep from its file alone).
        overwrite: replace an existing file.
        lock_timeout: seconds to wait for a file locked by another process.
        kind: what the sweep is (str, e.g. "phase_diagram"), stored in the file so that
            ``particles.load`` and ``particles.io.info`` know what to make of it. None: the
            config's "kind" or "study" entry if it is a str, else "results". Reopening a
            file of another kind than the one given is a ValueError.

    Example:
        >>> import numpy as np
        >>> betas = np.array([1.0, 2.0])
        >>> store = ResultStore("phase.h5", {"n": 32, "d": 2, "betas": betas})
        >>> for beta in betas:
        ...     key = f"beta={beta:g}"
        ...     if store.done(key):
        ...         continue
        ...     store.save(key, clusters=np.arange(3), beta=beta)
        >>> sorted(store.load("beta=1"))
        ['beta', 'clusters']
    """

    def __init__(self, path, config=None, *, overwrite=False, lock_timeout=60.0, kind=None):
        self.path = check_path(path)
        self.lock_timeout = check_real("lock_timeout", lock_timeout, low=0.0)
        if kind is not None and (not isinstance(kind, str) or not kind):
            raise TypeError(f"kind must be a non-empty str or None, got {type(kind).__name__} {kind!r}")
        if config is None:
            if overwrite:
                raise ValueError("overwrite=True needs the config of the new store")
            self._config = self._stored_config()
            self._check_kind(kind)
            return
        self._config = check_config(config)
        named = [self._config.get(key) for key in ("kind", "study")]
        new_kind = kind or next((name for name in named if isinstance(name, str)), RESULTS_KIND)
        if self.path.exists() and overwrite:
            self.path.unlink()
        if not self.path.exists():
            tmp = self.path.with_name(self.path.name + ".create-tmp")
            with h5_errors(self.path, "create"):
                with h5py.File(tmp, "w", libver=("earliest", "v108")) as f:
                    write_h5md(f, "results", new_kind)
                    group = f.create_group("parameters")
                    for key, value in self._config.items():
                        put_value(group, key, value)
                    group.attrs[".package_version"] = package_version()
                    f.create_group("results", track_order=True)
                    f.create_group("observables")
            # Atomic: a kill during creation leaves no half-made store behind.
            os.replace(tmp, self.path)
            return
        self._check_kind(kind)
        stored = self._stored_config()
        for key in sorted(set(stored) | set(self._config)):
            if key not in stored or key not in self._config or not same_config_value(stored[key], self._config[key]):
                raise ValueError(
                    f"config differs from the one stored in {self.path} at key {key!r}: "
                    f"stored {stored.get(key, '<missing>')!r}, given "
                    f"{self._config.get(key, '<missing>')!r}; use another file or "
                    f"overwrite=True"
                )

    def _check_kind(self, kind):
        # A file written before kinds were stored, recognised as plain "results", is left to
        # the config comparison, which names the setting that differs.
        if kind is not None and self.kind not in (kind, RESULTS_KIND):
            raise ValueError(f"{self.path} holds a {self.kind!r} sweep, not a {kind!r} one; use another file")

    @property
    def kind(self):
        """What the sweep is (see ``kind`` above), read from the file."""
        with self._read() as f:
            return file_kind(f, self.path)

    def _stored_config(self):
        with open_read(self.path) as f:
            check_schema(f, self.path, "results")
            with h5_errors(self.path, "read the config of"):
                stored = get_values(f["parameters"])
        stored.pop(".package_version", None)
        return stored

    @property
    def config(self):
        """The sweep's config (a copy)."""
        return dict(self._config)

    def done(self, key):
        """True when ``key`` was saved completely."""
        key = check_name("key", key)
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
        key = check_name("key", key)
        values = {name: check_value(name, value) for name, value in values.items()}
        with self._write() as f:
            results = f["results"]
            if key in results:
                raise ValueError(f"key {key!r} is already saved in {self.path}; delete(key) first to replace it")
            pending = results.require_group(".pending")
            if key in pending:
                del pending[key]  # left over by a killed save
            group = pending.create_group(key)
            for name, value in values.items():
                put_value(group, name, value)
            results.move(f".pending/{key}", key)

    def load(self, key):
        """The values saved under ``key`` as a dict (arrays as numpy arrays).

        Raises:
            KeyError: ``key`` was not saved (the message gives the count of saved keys).
        """
        key = check_name("key", key)
        with self._read() as f:
            if key not in f["results"]:
                raise NotStored(f"key {key!r} is not saved in {self.path} ({len(f['results'])} keys are)")
            return get_values(f["results"][key])

    def delete(self, key):
        """Remove a saved key (to recompute it)."""
        key = check_name("key", key)
        with self._write() as f:
            if key not in f["results"]:
                raise NotStored(f"key {key!r} is not saved in {self.path}")
            del f["results"][key]

    def save_observable(self, name, value, attrs=None, *, overwrite=False):
        """Store a whole-sweep array (phase diagram, summary table) as ``/observables/<name>``.

        Args:
            name: non-empty str without "/".
            value: array (or scalar).
            attrs: optional dict of scalars, strings or small arrays (axes, units).
            overwrite: replace an existing observable.
        """
        name = check_name("name", name)
        value = check_value("value", np.asarray(value))
        attrs = check_attrs("attrs", attrs)
        with self._write() as f:
            obs = f["observables"]
            if name in obs:
                if not overwrite:
                    raise FileExistsError(
                        f"observable {name!r} exists in {self.path}; pass overwrite=True to replace it"
                    )
                del obs[name]
            group = obs.create_group(name)
            group.create_dataset("value", data=value, **array_filters(value))
            for k, v in attrs.items():
                group.attrs[k] = v

    def load_observable(self, name):
        """(value, attrs) of a whole-sweep observable."""
        name = check_name("name", name)
        with self._read() as f:
            if name not in f["observables"]:
                raise NotStored(f"no observable {name!r} in {self.path}; it holds {sorted(f['observables'])}")
            group = f["observables"][name]
            return group["value"][()], {k: to_python(v) for k, v in group.attrs.items()}

    @contextlib.contextmanager
    def _read(self):
        with open_read(self.path) as f:
            check_schema(f, self.path, "results")
            with h5_errors(self.path, "read"):
                yield f

    @contextlib.contextmanager
    def _write(self):
        with open_write(self.path, lock_timeout=self.lock_timeout) as f:
            check_schema(f, self.path, "results")
            with h5_errors(self.path, "write"):
                yield f


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResults:
    """Everything a ``ResultStore`` file holds, read at once (``read_results``).

    Attributes:
        path: the file.
        kind: what the sweep is (``ResultStore``'s ``kind``), e.g. "hessian_growth".
        config: the sweep's config, a flat dict (arrays for sequences).
        results: the saved pieces, ``{key: {name: value}}`` in the order they were saved.
        observables: the whole-sweep arrays, ``{name: (value, attrs)}``.
    """

    path: Path
    kind: str
    config: dict
    results: dict
    observables: dict


def read_results(path):
    """Read a ``ResultStore`` file whole: config, every saved piece and observable.

    A study's own ``load`` (``simulations.<study>.load``) turns this into its result type;
    a phase diagram reads as a ``particles.PhaseDiagram`` through ``particles.load``.

    Returns:
        ``SweepResults``.

    Raises:
        FileNotFoundError: no such file.
        StoreError: not a ``ResultStore`` file of this package.
    """
    store = ResultStore(path)
    with store._read() as f:
        kind = file_kind(f, store.path)
        results = {key: get_values(f["results"][key]) for key in f["results"] if key != ".pending"}
        observables = {
            name: (group["value"][()], {k: to_python(v) for k, v in group.attrs.items()})
            for name, group in f["observables"].items()
        }
    return SweepResults(path=store.path, kind=kind, config=store.config, results=results, observables=observables)
