"""A study's config dataclass read back from its result file, so that ``load(path)`` needs the file alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from particles.io import ResultStore


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
