"""Argument guards shared by the public functions: ``ValueError`` for values, ``TypeError`` for types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def check_int(name: str, value: object, *, low: int = 1) -> int:
    """Return ``value`` if it is an int (not a bool) >= ``low``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return value


def check_float_dtype(name: str, value: object) -> torch.dtype:
    """Return ``value`` if it is torch.float32 or torch.float64."""
    if value not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be torch.float32 or torch.float64, got {value!r}")
    return value  # type: ignore[return-value]


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise ``ValueError`` if a floating tensor holds NaN or inf."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} must be finite, got {bad} non-finite entries in a tensor of shape {tuple(tensor.shape)}"
        )


def check_params(params: object) -> dict[str, Tensor]:
    """Check a parameter dictionary ``{name: tensor}`` and return it as a dict."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping name -> torch.Tensor, got {type(params).__name__}")
    if len(params) == 0:
        raise ValueError("params must hold at least one parameter, got an empty mapping")
    out = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"params keys must be str, got {type(key).__name__} {key!r}")
        if not isinstance(value, Tensor):
            raise TypeError(f"params[{key!r}] must be a torch.Tensor, got {type(value).__name__}")
        check_finite(f"params[{key!r}]", value)
        out[key] = value
    return out


def check_blocks(blocks: object, params: Mapping[str, Tensor]) -> tuple[str, ...]:
    """Resolve the block names: ``None`` means every floating parameter, in dictionary order."""
    if blocks is None:
        names = tuple(k for k, v in params.items() if v.is_floating_point())
        if not names:
            raise ValueError("params holds no floating-point tensor to differentiate")
        return names
    if isinstance(blocks, str):
        blocks = (blocks,)
    if not isinstance(blocks, Sequence):
        raise TypeError(f"blocks must be a sequence of parameter names or None, got {type(blocks).__name__}")
    names = tuple(blocks)
    if not names:
        raise ValueError("blocks must name at least one parameter, got an empty sequence")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"blocks must contain str names, got {type(name).__name__} {name!r}")
        if name not in params:
            raise ValueError(f"blocks: no parameter named {name!r}; available names: {sorted(params)}")
        if not params[name].is_floating_point():
            raise ValueError(f"blocks: parameter {name!r} has dtype {params[name].dtype}, expected a floating dtype")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"blocks must not repeat a name, got duplicates {dup}")
    return names
