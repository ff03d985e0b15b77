"""A dense matrix over a list of named parameter blocks, with its block boundaries."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
from torch import Tensor


@dataclass(frozen=True)
class BlockMatrix:
    """Dense (P, P) matrix whose rows and columns are the row-major vecs of named parameters, in order.

    Attributes:
        matrix: (P, P) tensor.
        names: parameter names, in the order of the rows.
        shapes: parameter shapes; block ``names[i]`` spans ``boundaries[i]:boundaries[i + 1]``.

    Example:
        ``H.block("W_Q", "W_V")`` is the (P_Q, P_V) sub-matrix; ``H.blocks[("W_Q", "W_V")]`` the same.
    """

    matrix: Tensor
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        P = sum(self.sizes)
        if self.matrix.shape != (P, P):
            raise ValueError(
                f"matrix must have shape ({P}, {P}) for blocks {dict(zip(self.names, self.shapes))}, got "
                f"{tuple(self.matrix.shape)}"
            )
        if len(self.names) != len(self.shapes):
            raise ValueError(f"names and shapes must have equal length, got {len(self.names)} and {len(self.shapes)}")

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of entries of each block."""
        return tuple(prod(s) for s in self.shapes)

    @property
    def boundaries(self) -> tuple[int, ...]:
        """Offsets (n_blocks + 1,) of the blocks along each axis, starting at 0 and ending at P."""
        out = [0]
        for size in self.sizes:
            out.append(out[-1] + size)
        return tuple(out)

    def _span(self, name: str) -> slice:
        if name not in self.names:
            raise ValueError(f"no block named {name!r}; blocks are {list(self.names)}")
        i = self.names.index(name)
        b = self.boundaries
        return slice(b[i], b[i + 1])

    def block(self, row: str, col: str | None = None) -> Tensor:
        """The (P_row, P_col) sub-matrix; ``col`` defaults to ``row``."""
        return self.matrix[self._span(row), self._span(row if col is None else col)]

    @property
    def blocks(self) -> dict[tuple[str, str], Tensor]:
        """Every block as a dictionary ``{(row, col): (P_row, P_col) tensor}``."""
        return {(a, b): self.block(a, b) for a in self.names for b in self.names}

    def _check_same(self, other: object) -> BlockMatrix:
        if not isinstance(other, BlockMatrix):
            raise TypeError(f"expected a BlockMatrix, got {type(other).__name__}")
        if other.names != self.names or other.shapes != self.shapes:
            raise ValueError(f"block layouts differ: {self.names}/{self.shapes} vs {other.names}/{other.shapes}")
        return other

    def __add__(self, other: BlockMatrix) -> BlockMatrix:
        return BlockMatrix(self.matrix + self._check_same(other).matrix, self.names, self.shapes)

    def __sub__(self, other: BlockMatrix) -> BlockMatrix:
        return BlockMatrix(self.matrix - self._check_same(other).matrix, self.names, self.shapes)

    def to(self, dtype: torch.dtype) -> BlockMatrix:
        """The same matrix in another dtype."""
        return BlockMatrix(self.matrix.to(dtype), self.names, self.shapes)
