"""Argument guards shared by the public functions: each names the argument, what it got and
what it expected."""

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def as_float_array(name, value):
    """``value`` as a float32/float64 array; anything else is a TypeError, never a cast."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a float64 or float32 array, got {type(value).__name__}")
    array = np.asarray(value)
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float64 or float32 array, got dtype {array.dtype}")
    return array


def check_finite(name, array):
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{name} must be finite, got {array[tuple(bad)]} at index {tuple(bad)}")


def check_real(name, value, *, low=None, low_inclusive=True, high=None, finite=True):
    """A real scalar (not bool), optionally bounded below and (inclusively) above."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if finite and not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None:
        if low_inclusive and value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
        if not low_inclusive and value <= low:
            raise ValueError(f"{name} must be > {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_int(name, value, *, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_dtype(name, value):
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"{name} must be 'float64' or 'float32', got {value!r}") from None
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be 'float64' or 'float32', got {value!r}")
    return dtype


def check_configuration(name, x, *, tol):
    """One configuration (n, d), n >= 1, d >= 2, finite, rows of unit norm within ``tol``;
    returned as float64."""
    x = as_float_array(name, x)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 2:
        raise ValueError(f"{name} must have shape (n, d) with n >= 1 and d >= 2, got shape {x.shape}")
    check_finite(name, x)
    x = x.astype(np.float64)
    err = np.abs(np.linalg.norm(x, axis=1) - 1.0)
    worst = int(np.argmax(err))
    if err[worst] > tol:
        raise ValueError(
            f"{name} must have unit rows (| |x_i| - 1 | <= {tol:g}); row {worst} has norm {np.linalg.norm(x[worst])!r}"
        )
    return x
