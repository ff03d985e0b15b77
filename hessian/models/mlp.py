"""MLP comparison model of the theory note (§2.11, §3.3): embedding + linear layers, no bias, no activation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_float_dtype, check_int


@dataclass(frozen=True, kw_only=True)
class LinearMLP:
    """Deep linear network ``F = E[tokens] W_0 W_1 ... W_{n-1}`` applied per token.

    Row convention: ``layers.{i}.W`` has shape (in, out); layers 0..n-2 are (d_model, d_model), the last
    (d_model, d_vocab). ``embed.W_E`` is (d_vocab, d_model). Float input (..., d_model) skips the embedding.

    Attributes:
        n_layers: number of linear layers (>= 1).
        d_model: width.
        d_vocab: vocabulary size and output width.

    Example:
        >>> mlp = LinearMLP(n_layers=2, d_model=4, d_vocab=3)
        >>> mlp(mlp.init(seed=0), torch.tensor([[0, 2]])).shape
        torch.Size([1, 2, 3])
    """

    n_layers: int = 1
    d_model: int = 128
    d_vocab: int = 12

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "d_vocab"):
            check_int(name, getattr(self, name))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the parameters."""
        shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (self.d_vocab, self.d_model)}
        for i in range(self.n_layers):
            shapes[f"layers.{i}.W"] = (self.d_model, self.d_vocab if i == self.n_layers - 1 else self.d_model)
        return shapes

    def init(self, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
        """PyTorch default init: embedding N(0, 1), linear weights U(-1/sqrt(in), 1/sqrt(in))."""
        check_float_dtype("dtype", dtype)
        gen = torch.Generator().manual_seed(seed)
        params = {}
        for name, shape in self.param_shapes().items():
            if name == "embed.W_E":
                params[name] = torch.randn(shape, generator=gen, dtype=dtype)
            else:
                bound = 1.0 / math.sqrt(shape[0])
                params[name] = (2 * torch.rand(shape, generator=gen, dtype=dtype) - 1) * bound
        return params

    def __call__(self, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
        """Apply the network.

        Args:
            params: dict with the names of ``param_shapes``.
            X: (...,) integer tokens, or (..., d_model) float inputs.

        Returns:
            (..., d_vocab).
        """
        if X.is_floating_point():
            if X.shape[-1:] != (self.d_model,):
                raise ValueError(f"float X must have shape (..., d_model={self.d_model}), got {tuple(X.shape)}")
            h = X
        else:
            h = params["embed.W_E"][X]
        for i in range(self.n_layers):
            h = h @ params[f"layers.{i}.W"]
        return h
