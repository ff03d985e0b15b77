"""A study's result file, opened from its path alone, and the study's config read back from it.

One layout: the store's own config is ``{"kind": <study>, **<the study's config>}``, so that
``particles.load`` and ``particles.io.info`` show the config (and its seed) of any study's file,
and reopening a file with another config is refused naming the first differing key.
``open_study_store`` also reads the files of the layout used before (the store's config
``{"study": <study>}`` and the config saved as the piece ``CONFIG_KEY``), and resumes them.
"""

import dataclasses
from pathlib import Path

import numpy as np

from particles.io import ResultStore

from .naming import config_digest

#: The piece holding the config in files of the earlier layout.
CONFIG_KEY = "config"


def open_study_store(path, study, config=None):
    """The ``ResultStore`` of a study's file and the study's config as a flat dict.

    Args:
        path: the HDF5 file (created on a run's first call).
        study: the study's name, e.g. ``"metastability"``: the file's kind.
        config: the run's config (dataclass or flat dict); None to read the stored one.

    Returns:
        (store, config): the store, and the config as stored (arrays for sequences).

    Raises:
        FileNotFoundError: ``config`` is None and the file does not exist or holds no config.
        ValueError: the file belongs to another study, or its config differs from ``config``
            (naming the first differing key).
    """
    path = Path(path)
    if config is None and not path.is_file():
        raise FileNotFoundError(f"path must be a {study} result file, got {str(path)!r}, which does not exist")
    if dataclasses.is_dataclass(config):
        config = config.as_dict() if hasattr(config, "as_dict") else dataclasses.asdict(config)
    if path.is_file():
        stored = ResultStore(path).config
        if stored.get("study") == study and "kind" not in stored:
            return _open_earlier_layout(path, study, config)
    if config is None:
        store = ResultStore(path)
        kind = store.config.get("kind")
        if kind != study:
            raise ValueError(f"{path} is not a {study} file (kind={kind!r})")
    else:
        store = ResultStore(path, {"kind": study, **config})
    return store, {key: value for key, value in store.config.items() if key != "kind"}


def _open_earlier_layout(path, study, config):
    """``open_study_store`` on a file whose config is the saved piece ``CONFIG_KEY``."""
    store = ResultStore(path, {"study": study})
    if config is None:
        if not store.done(CONFIG_KEY):
            raise FileNotFoundError(f"{path} holds no {study} config: it was never run")
        return store, store.load(CONFIG_KEY)
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
