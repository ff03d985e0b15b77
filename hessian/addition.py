"""The 5-digit addition task of the reference experiments (theory note §3.1, after Quirke & Barez).

A sequence is ``x_{n-1}..x_0 + y_{n-1}..y_0 = z_n..z_0`` (most significant digit first): n digits, the
token ``PLUS`` (10), n digits, ``EQUALS`` (11) and the n + 1 digits of the sum, 3n + 3 tokens over a
vocabulary of 12. With probability 1/5 per batch, 20% of the digit columns are rewritten to sum to 9
(``x := 9 - y`` or ``y := 9 - x`` with probability 1/2 each), which makes the rare cascading carries
common enough to learn. Unlike the authors' generator (global torch and Python RNGs), every draw comes
from generators seeded by ``seed``, so a batch is a pure function of its arguments.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor

from .checks import check_int

PLUS = 10
EQUALS = 11
VOCAB = 12
#: probability per batch of the rare-carry enrichment, and the fraction of digit columns it rewrites
ENRICH_PROBABILITY = 0.2
ENRICH_FRACTION = 0.2


def sequence_length(num_digits: int) -> int:
    """3n + 3 tokens: two n-digit operands, '+', '=' and the (n + 1)-digit sum."""
    return 3 * num_digits + 3


def answer_positions(num_digits: int = 5) -> tuple[int, int]:
    """(start, stop) of the sum digits, e.g. (12, 18) for n = 5."""
    start = 2 * num_digits + 2
    return start, start + num_digits + 1


def _digits_to_int(d: Tensor) -> Tensor:
    """(B, n) digits, most significant first -> (B,) int64."""
    n = d.shape[-1]
    powers = 10 ** torch.arange(n - 1, -1, -1, dtype=torch.int64)
    return (d * powers).sum(-1)


def addition_data(batch_size: int, *, num_batches: int = 1, num_digits: int = 5, seed: int = 1234) -> Tensor:
    """Seeded batches of addition sequences.

    Args:
        batch_size: sequences per batch.
        num_batches: number of batches (each gets its own enrichment coin, as in the reference generator).
        num_digits: n, digits per operand (5 in the paper).
        seed: seeds a private torch.Generator (digits, positions) and a private random.Random (the per-batch
            coin); the same arguments always give the same tokens.

    Returns:
        (num_batches, batch_size, 3 n + 3) int64 tokens in [0, 12).

    Raises:
        TypeError, ValueError: non-integer or non-positive sizes; n > 17 (the sum would overflow int64).

    Example:
        >>> addition_data(2, seed=0)[0, :, [5, 11]].tolist()
        [[10, 11], [10, 11]]
    """
    check_int("batch_size", batch_size)
    check_int("num_batches", num_batches)
    check_int("num_digits", num_digits)
    if num_digits > 17:
        raise ValueError(f"num_digits must be <= 17 (int64 sums), got {num_digits}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    gen = torch.Generator().manual_seed(seed)
    coin = random.Random(seed)
    n = num_digits
    batches = []
    for _ in range(num_batches):
        x = torch.randint(0, 10, (batch_size, n), generator=gen)
        y = torch.randint(0, 10, (batch_size, n), generator=gen)
        if coin.random() < ENRICH_PROBABILITY:
            count = int(ENRICH_FRACTION * x.numel())
            flat = torch.randperm(x.numel(), generator=gen)[:count]
            rewrite_x = torch.rand(count, generator=gen) < 0.5
            xf, yf = x.reshape(-1), y.reshape(-1)
            # columns summing to 9 propagate a carry from below: the hard cases of the task
            xf[flat[rewrite_x]] = 9 - yf[flat[rewrite_x]]
            yf[flat[~rewrite_x]] = 9 - xf[flat[~rewrite_x]]
        total = _digits_to_int(x) + _digits_to_int(y)
        powers = 10 ** torch.arange(n, -1, -1, dtype=torch.int64)
        z = (total[:, None] // powers) % 10
        plus = torch.full((batch_size, 1), PLUS, dtype=torch.int64)
        equals = torch.full((batch_size, 1), EQUALS, dtype=torch.int64)
        batches.append(torch.cat([x, plus, y, equals, z], dim=1))
    return torch.stack(batches)
