"""Result files named by their configuration: a readable head and a digest of every field,
so two configurations never share a file (the store also refuses a mismatching config)."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np


def config_digest(config, length=10):
    """Hex digest of a config (a dataclass or a flat mapping), independent of key order.

    Arrays and tuples count as lists and numpy scalars as Python numbers, so a config read
    back from a file gives the digest of the one that wrote it.

    Example:
        >>> config_digest({"n": 32, "betas": (1.0, 2.0)}) == config_digest({"betas": [1.0, 2.0], "n": 32})
        True
    """
    if dataclasses.is_dataclass(config):
        config = config.as_dict() if hasattr(config, "as_dict") else dataclasses.asdict(config)
    text = json.dumps({str(k): _plain(v) for k, v in config.items()}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def result_path(out, head, config, suffix=".h5"):
    """``out / f"{head}_{digest}{suffix}"``, creating ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{head}_{config_digest(config)}{suffix}"


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
