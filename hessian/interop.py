"""``torch.nn.Module`` wrappers so module-based libraries (curvlinops, BackPACK) see our functional models."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor


class FunctionalModule(torch.nn.Module):
    """``f(params, X)`` as a module whose ``nn.Parameter`` s are the entries of ``params``.

    ``module.parameter(name)`` returns the ``nn.Parameter`` of a block, e.g. for
    ``HessianLinearOperator(module, loss, [module.parameter("blocks.0.attn.W_Q")], data)``.
    Module attribute names cannot hold dots, so parameters live in a ParameterList in ``params`` order.
    """

    def __init__(self, model: Callable[[Mapping[str, Tensor], Tensor], Tensor], params: Mapping[str, Tensor]):
        super().__init__()
        self.model = model
        self.names = list(params)
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(params[n].detach().clone()) for n in self.names])

    def parameter(self, name: str) -> torch.nn.Parameter:
        """The ``nn.Parameter`` holding ``params[name]``."""
        if name not in self.names:
            raise ValueError(f"no parameter named {name!r}; available: {self.names}")
        return self.weights[self.names.index(name)]

    def forward(self, X: Tensor) -> Tensor:
        return self.model(dict(zip(self.names, self.weights)), X)


class LossModule(torch.nn.Module):
    """``loss(output, Y)`` as a module with the ``reduction`` attribute curvlinops reads (one batch: any works)."""

    def __init__(self, loss: Callable[[Tensor, Tensor], Tensor], reduction: str = "mean"):
        super().__init__()
        self.loss = loss
        self.reduction = reduction

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return self.loss(output, target)
