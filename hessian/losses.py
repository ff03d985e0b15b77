"""Losses ``loss(output, target) -> scalar``: MSE and cross-entropy, optionally on selected token positions.

The reference experiments (theory note §3.2) use ``CrossEntropyLoss(positions=(11, 17), target_shift=1)``
(logits at 11..16 against the next tokens 12..17) and ``MSELoss(reduction="sum", positions=(11, 17))``
with integer targets (one-hot of the tokens at the same positions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _check_positions(positions: object) -> None:
    if positions is None:
        return
    ok = (
        isinstance(positions, tuple)
        and len(positions) == 2
        and all(isinstance(p, int) and not isinstance(p, bool) for p in positions)
        and 0 <= positions[0] < positions[1]
    )
    if not ok:
        raise ValueError(
            f"positions must be None or a tuple (start, stop) of ints with 0 <= start < stop, got {positions!r}"
        )


def _select(x: Tensor, axis: int, start: int, stop: int, name: str) -> Tensor:
    if x.ndim < -axis or x.shape[axis] < stop:
        raise ValueError(f"{name} needs at least {stop} positions on axis {axis}, got shape {tuple(x.shape)}")
    return x.narrow(axis, start, stop - start)


@dataclass(frozen=True, kw_only=True)
class MSELoss:
    """Squared error ``sum (F - Y)^2``, divided by the number of entries for ``reduction="mean"``.

    ``reduction="mean"`` is the paper's ``||F - Y||_F^2 / (L d_V)`` for one sequence.

    Attributes:
        reduction: "mean" or "sum".
        positions: (start, stop) token range on axis -2 of the output, or None for all tokens.
    """

    reduction: str = "mean"
    positions: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {self.reduction!r}")
        _check_positions(self.positions)

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        """Loss value.

        Args:
            output: (..., L, K) network output.
            target: (..., L, K) float target, or (..., L) integer tokens (compared with their one-hot).

        Returns:
            0-dim tensor.
        """
        if output.ndim < 2:
            raise ValueError(f"output must have shape (..., L, K), got {tuple(output.shape)}")
        if not target.is_floating_point():
            # comparison instead of F.one_hot, which checks values and so breaks under torch.func.vmap
            classes = torch.arange(output.shape[-1], device=output.device)
            target = (target.unsqueeze(-1) == classes).to(output.dtype)
        if self.positions is not None:
            output = _select(output, -2, *self.positions, "output")
            target = _select(target, -2, *self.positions, "target")
        if target.shape != output.shape:
            raise ValueError(f"target must match the output shape {tuple(output.shape)}, got {tuple(target.shape)}")
        sq = ((output - target) ** 2).sum()
        return sq / output.numel() if self.reduction == "mean" else sq


@dataclass(frozen=True, kw_only=True)
class CrossEntropyLoss:
    """Mean over scored tokens of ``-log softmax(F_i)[t_i]``.

    Attributes:
        positions: (start, stop) range of scored output positions, or None for all.
        target_shift: the output at position i is scored against the target at i + target_shift
            (1 for next-token prediction).
    """

    positions: tuple[int, int] | None = None
    target_shift: int = 0

    def __post_init__(self) -> None:
        _check_positions(self.positions)
        if isinstance(self.target_shift, bool) or not isinstance(self.target_shift, int) or self.target_shift < 0:
            raise ValueError(f"target_shift must be an int >= 0, got {self.target_shift!r}")

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        """Loss value.

        Args:
            output: (..., L, K) logits.
            target: (..., L_t) integer classes in [0, K).

        Returns:
            0-dim tensor.
        """
        if output.ndim < 2:
            raise ValueError(f"output must have shape (..., L, K), got {tuple(output.shape)}")
        if target.is_floating_point():
            raise TypeError(f"target must hold integer classes, got dtype {target.dtype}")
        start, stop = self.positions if self.positions is not None else (0, output.shape[-2] - self.target_shift)
        if stop <= start:
            raise ValueError(
                f"no position to score: output length {output.shape[-2]}, target_shift {self.target_shift}"
            )
        logits = _select(output, -2, start, stop, "output")
        tgt = _select(target, -1, start + self.target_shift, stop + self.target_shift, "target")
        if tgt.shape != logits.shape[:-1]:
            raise ValueError(
                f"target must have shape {tuple(logits.shape[:-1])} after selection, got {tuple(tgt.shape)}"
            )
        logp = torch.log_softmax(logits, dim=-1)
        return -logp.gather(-1, tgt.unsqueeze(-1)).mean()
