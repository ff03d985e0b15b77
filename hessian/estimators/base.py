"""What every estimator shares: the ``Estimate`` result, operator coercion, probes, guards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from ..block_matrix import BlockMatrix
from ..checks import check_int


@dataclass(frozen=True)
class Estimate:
    """An estimate with its standard error.

    Attributes:
        value: float, or (n,) array for diagonals and eigenvalues.
        stderr: standard error of ``value`` (same shape); 0 for exact values; for eigenvalues the
            residual norms ``||A u - lambda u||``, which bound the distance to the nearest eigenvalue.
        num_matvecs: operator products used.
    """

    value: float | np.ndarray
    stderr: float | np.ndarray
    num_matvecs: int

    def __float__(self) -> float:
        return float(self.value)


def as_matmat(A: object) -> tuple[Callable[[np.ndarray], np.ndarray], int, np.dtype]:
    """``(matmat, n, dtype)`` for a square LinearOperator, numpy array, torch tensor or BlockMatrix."""
    if isinstance(A, BlockMatrix):
        A = A.matrix
    if isinstance(A, torch.Tensor):
        A = A.detach().cpu().numpy()
    if isinstance(A, np.ndarray):
        if A.ndim != 2:
            raise ValueError(f"A must be a square 2-D matrix, got shape {A.shape}")
        M = A
        matmat = lambda V: M @ V  # noqa: E731
    elif isinstance(A, LinearOperator):
        matmat = A.matmat
    else:
        raise TypeError(
            f"A must be a scipy LinearOperator, numpy array, torch tensor or BlockMatrix, got {type(A).__name__}"
        )
    if len(A.shape) != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {tuple(A.shape)}")
    dtype = np.dtype(A.dtype) if np.dtype(A.dtype).kind == "f" else np.dtype(np.float64)
    return matmat, int(A.shape[0]), dtype


def rademacher(rng: np.random.Generator, n: int, k: int, dtype: np.dtype) -> np.ndarray:
    """(n, k) matrix of independent +-1 entries."""
    return (2 * rng.integers(0, 2, size=(n, k)) - 1).astype(dtype)


def check_samples(name: str, num_samples: object, n: int, *, at_most_dim: bool = False) -> int:
    """Positive int; with ``at_most_dim`` also <= n (sketches and Krylov spaces cannot exceed the dimension)."""
    check_int(name, num_samples)
    if at_most_dim and num_samples > n:
        raise ValueError(
            f"{name}={num_samples} exceeds the dimension n={n} of the operator; use at most {n} (or an exact method)"
        )
    return num_samples


def exact_columns(matmat: Callable[[np.ndarray], np.ndarray], n: int, dtype: np.dtype, batch: int = 256):
    """Yield ``(start, A[:, start:start + b])`` for the columns of A, b <= batch."""
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        E = np.zeros((n, stop - start), dtype=dtype)
        E[np.arange(start, stop), np.arange(stop - start)] = 1
        yield start, np.asarray(matmat(E))


def mean_and_stderr(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 and its standard error (sample std with ddof=1 over sqrt(S); 0 when S = 1 is not estimable)."""
    S = samples.shape[0]
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(S) if S > 1 else np.full_like(mean, np.nan)
    return mean, se
