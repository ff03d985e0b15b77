"""The checked record of a curvature problem (model, loss, params, X, Y, blocks), validated and cast once.

``hessian.problem.CurvatureProblem`` is its public face; the products, dense matrices and operators take it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import prod

import torch
from torch import Tensor

from .checks import check_blocks, check_finite, check_float_dtype, check_params

Model = Callable[[Mapping[str, Tensor], Tensor], Tensor]
Loss = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Problem:
    """A checked curvature problem: ``l(w) = loss(model(params with blocks = w, X), Y)``."""

    model: Model
    loss: Loss
    params: dict[str, Tensor]
    X: Tensor
    Y: Tensor
    names: tuple[str, ...]

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(self.params[n].shape) for n in self.names)

    @property
    def dim(self) -> int:
        """P, the number of differentiated entries."""
        return sum(prod(s) for s in self.shapes)

    @property
    def dtype(self) -> torch.dtype:
        return self.params[self.names[0]].dtype


def _cast(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x.to(dtype) if x.is_floating_point() else x


def check_problem(
    model: object, loss: object, params: object, X: object, Y: object, blocks: object, dtype: object
) -> tuple[Model, Loss, dict[str, Tensor], Tensor, Tensor, tuple[str, ...]]:
    """The fields of a ``Problem``: every argument checked, floating tensors cast to ``dtype``, the loss a finite
    scalar at ``params``."""
    if not callable(model):
        raise TypeError(f"model must be a callable f(params, X), got {type(model).__name__}")
    if not callable(loss):
        raise TypeError(f"loss must be a callable loss(output, Y) -> scalar, got {type(loss).__name__}")
    dtype = check_float_dtype("dtype", dtype)
    params = check_params(params)
    for name, value in (("X", X), ("Y", Y)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        check_finite(name, value)
    names = check_blocks(blocks, params)
    params = {k: _cast(v, dtype) for k, v in params.items()}
    Xc, Yc = _cast(X, dtype), _cast(Y, dtype)
    with torch.no_grad():
        try:
            out = model(params, Xc)
        except (RuntimeError, IndexError) as err:
            raise ValueError(f"model(params, X) failed for X of shape {tuple(X.shape)}: {err}") from err
        if not isinstance(out, Tensor):
            raise TypeError(f"model must return a torch.Tensor, got {type(out).__name__}")
        try:
            value = loss(out, Yc)
        except RuntimeError as err:
            raise ValueError(
                f"loss(output, Y) failed for output {tuple(out.shape)} and Y {tuple(Yc.shape)}: {err}"
            ) from err
    if not isinstance(value, Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"loss must return a scalar (0-dim tensor), got {shape}")
    if not bool(torch.isfinite(value)):
        raise ValueError(f"loss at the given params is not finite: {value.item()}")
    return model, loss, params, Xc, Yc, names


def make_problem(
    model: object, loss: object, params: object, X: object, Y: object, blocks: object, dtype: object
) -> Problem:
    """The checked ``Problem`` (``check_problem``)."""
    return Problem(*check_problem(model, loss, params, X, Y, blocks, dtype))


def unflatten(problem_names: tuple[str, ...], shapes: tuple[tuple[int, ...], ...], w: Tensor) -> dict[str, Tensor]:
    """Split a flat (P,) vector into ``{name: tensor}`` with the block shapes (row-major)."""
    out, start = {}, 0
    for name, shape in zip(problem_names, shapes):
        size = prod(shape)
        out[name] = w[start : start + size].reshape(shape)
        start += size
    return out


def flatten(params: Mapping[str, Tensor], names: tuple[str, ...]) -> Tensor:
    """Concatenate the row-major vecs of ``params[name]`` for ``name in names``."""
    return torch.cat([params[n].reshape(-1) for n in names])


def flat_gradient(model, loss, params, X, Y, names, dtype) -> tuple[Tensor, Tensor]:
    """(g, value): the exact gradient of ``loss(model(params, X), Y)`` over ``names``, flattened
    as by ``flatten``, and the loss, with the floating tensors cast to ``dtype``."""
    cast = {n: _cast(p, dtype) for n, p in params.items()}
    Xc, Yc = _cast(X, dtype), _cast(Y, dtype)

    def objective(moved: dict[str, Tensor]) -> Tensor:
        return loss(model({**cast, **moved}, Xc), Yc)

    grads, value = torch.func.grad_and_value(objective)({n: cast[n] for n in names})
    return flatten(grads, tuple(names)), value
