"""The embedding-scale grids of the growth studies (Ormaniec et al., 2025): sigma is the std of the embeddings."""

from collections.abc import Callable

import numpy as np

GRIDS: dict[str, Callable[[int], np.ndarray]] = {
    "log": lambda num: 10 ** np.linspace(-2, 1, num),
    "log_short": lambda num: 10 ** np.linspace(-1, 0, num),
    "linear": lambda num: np.linspace(0.1, 10, num),
    "linear_short": lambda num: np.linspace(0.1, 1, num),
}


def sigma_grid(name: str, num: int = 20) -> np.ndarray:
    """The sigma grids of Ormaniec et al. (2025) (20 points in the paper).

    Args:
        name: "log" (10^[-2, 1]), "log_short" (10^[-1, 0]), "linear" ([0.1, 10]), "linear_short" ([0.1, 1]).
        num: number of points.

    Returns:
        (num,) increasing sigmas.

    Example:
        >>> sigma_grid("log", 4).tolist()
        [0.01, 0.1, 1.0, 10.0]
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"num must be an int >= 2, got {num!r}")
    if name not in GRIDS:
        raise ValueError(f"grid must be one of {sorted(GRIDS)}, got {name!r}")
    return GRIDS[name](num)
