"""The argument guards: one order, name first, as in ``particles.checks``."""

import pytest
import torch

from hessian.checks import check_finite, check_float_dtype, check_int


def test_check_int():
    assert check_int("k", 3) == 3 and check_int("n", 0, low=0) == 0
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        check_int("k", 0)
    with pytest.raises(TypeError, match="k must be an int >= 2, got bool True"):
        check_int("k", True, low=2)
    with pytest.raises(TypeError, match="k must be an int >= 1, got float 2.0"):
        check_int("k", 2.0)


def test_check_finite_and_dtype():
    check_finite("X", torch.ones(2))
    check_finite("tokens", torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"X must be finite, got 1 non-finite entries in a tensor of shape \(2,\)"):
        check_finite("X", torch.tensor([1.0, float("nan")]))
    assert check_float_dtype("dtype", torch.float32) is torch.float32
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64, got torch.float16"):
        check_float_dtype("dtype", torch.float16)
