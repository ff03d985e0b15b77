"""A study's result file, opened from its path alone.

``particles.io.ResultStore`` checks the config it is opened with against the stored one, so
reading a file needs its config first. A study's store is therefore opened with its name
only, and the study's config is the store's first saved piece, under ``CONFIG_KEY``: a run
checks it (a rerun resumes only with the same config) and ``load``/``plot`` read it back.
"""

import dataclasses
from pathlib import Path

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
