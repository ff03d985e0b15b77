"""A study's result file, opened from its path alone, and the study's config read back from it.

Two layouts exist, both read here: the hessian studies store their config as the store's own
config (``stored_config``); histograms, metastability and critical points store it as the
first saved piece (``open_study_store``).

In the second layout the store is opened with the study's name only and the config is saved
under ``CONFIG_KEY``: a run checks it (a rerun resumes only with the same config) and
``load``/``plot`` read it back.
"""

import dataclasses
from pathlib import Path

import numpy as np

from particles.io import ResultStore

from .naming import config_digest

CONFIG_KEY = "config"


def open_study_store(path, study, config=None):
    """The ``ResultStore`` of a study's file and the study's config as a flat dict.

    Args:
        path: the HDF5 file (created on a run's first call).
        study: the study's name, e.g. ``"metastability"``; the file must belong to it.
        config: the run's config (dataclass or flat dict); None to read the stored one.

    Returns:
        (store, config): the store, and the config as stored (arrays for sequences).

    Raises:
        FileNotFoundError: ``config`` is None and the file has no saved config.
        ValueError: the stored config differs from ``config`` (naming the first key).
    """
    if config is None and not Path(path).is_file():
        raise FileNotFoundError(f"path must be a {study} result file, got {str(path)!r}, which does not exist")
    store = ResultStore(path, {"study": study})
    if config is None:
        if not store.done(CONFIG_KEY):
            raise FileNotFoundError(f"{path} holds no {study} config: it was never run")
        return store, store.load(CONFIG_KEY)
    if dataclasses.is_dataclass(config):
        config = config.as_dict() if hasattr(config, "as_dict") else dataclasses.asdict(config)
    if not store.done(CONFIG_KEY):
        store.save(CONFIG_KEY, **config)
    stored = store.load(CONFIG_KEY)
    if config_digest(stored) != config_digest(config):
        differs = [k for k in sorted(set(stored) | set(config)) if _digest_of(stored, k) != _digest_of(config, k)]
        key = differs[0]
        raise ValueError(
            f"config differs from the one stored in {path} at key {key!r}: stored "
            f"{stored.get(key, '<missing>')!r}, given {config.get(key, '<missing>')!r}; use another file"
        )
    return store, stored


def _digest_of(mapping, key):
    return config_digest({key: mapping.get(key, "<missing>")})


def stored_config(path: str | Path, cls: type, kind: str):
    """The ``cls`` instance stored in the ``particles.io.ResultStore`` file ``path`` of ``kind``."""
    return cls(**stored_fields(path, cls, kind))


def stored_fields(path: str | Path, cls: type, kind: str) -> dict:
    """The fields of the ``cls`` config stored in the ``particles.io.ResultStore`` file ``path`` of ``kind``.

    Only the fields of ``cls`` are read (the store may hold more, such as ``kind``); a scalar field gets the
    type of its default, so an HDF5 integer read back as a float still builds the same config.

    Raises:
        ValueError: ``path`` is not a file, or holds another kind of result.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {path} is not a file")
    attrs = ResultStore(path).config
    if attrs.get("kind") != kind:
        raise ValueError(f"{path} is not a {kind} file (kind={attrs.get('kind')!r})")
    out = {}
    for field in dataclasses.fields(cls):
        if field.name in attrs:
            v = attrs[field.name]
            v = v.item() if isinstance(v, np.generic) else v
            out[field.name] = type(field.default)(v) if isinstance(field.default, (bool, int, float, str)) else v
    return out
