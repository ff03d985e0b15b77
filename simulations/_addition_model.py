"""The model and data shared by the Hessian studies on 5-digit addition (Ormaniec et al., 2025).

A ``Transformer`` (one head, d_head = d_model) that reads out the positions predicting the answer digits,
and the cross-entropy problem on one batch of addition sequences.
"""

from __future__ import annotations

from torch import Tensor

from hessian import CrossEntropyLoss, Transformer
from hessian.addition import addition_data, answer_positions

#: [start, stop) of the answer digits of a 5-digit addition sequence
ANSWER = answer_positions(5)


def addition_transformer(*, d_model: int, d_mlp: int, layer_norm: bool, n_layers: int = 1) -> Transformer:
    """The studies' transformer: one head of width d_model, reading out the positions before the answer digits."""
    a0, a1 = ANSWER
    return Transformer(
        n_layers=n_layers,
        d_model=d_model,
        d_head=d_model,
        d_mlp=d_mlp,
        layer_norm=layer_norm,
        readout=(a0 - 1, a1 - 1),
    )


def addition_problem(model: Transformer, batch: int, *, seed: int = 1234) -> tuple[Tensor, Tensor, CrossEntropyLoss]:
    """(tokens (batch, 18), target (batch, 6) answer digits, loss) of the reference CE objective.

    The model must read out the positions before the answer digits (``readout=(11, 17)``).
    """
    a0, a1 = ANSWER
    if model.readout != (a0 - 1, a1 - 1):
        raise ValueError(
            f"model.readout must be {(a0 - 1, a1 - 1)} (the positions that predict the answer), got {model.readout}"
        )
    tokens = addition_data(batch, seed=seed)[0]
    return tokens, tokens[:, a0:a1], CrossEntropyLoss()
