"""Random Q, K, V of the authors' phase-diagram code (Geshkovski et al., 2023; theory note,
section 2), in this package's convention.

The authors write logits beta x_i^T B x_j and values v V (row vectors). Here logits are
beta <Q x_i, K x_j> = beta x_i^T (Q^T K) x_j and values V x_j, so B plays A = Q^T K and
their V is our V^T. ``draw`` returns (A, V) in our convention, which give exactly their
dynamics.
"""

import numpy as np

from .checks import check_choice, check_int

__all__ = ["INTERACTIONS", "VALUES", "draw"]

#: Choices for B = Q^T K.
INTERACTIONS = ("identity", "gaussian", "wigner_diag", "goe")
#: Choices for V.
VALUES = ("identity", "gaussian", "plus_qk", "minus_qk")


def draw(interaction, value, d, rng, size=None):
    """Draw (A, V) = (Q^T K, V).

    Args:
        interaction: "identity"; "gaussian": G_1 G_2 / sqrt(d); "wigner_diag": (G + G^T) /
            sqrt(2) off the diagonal and G_ii on it (the authors' "wrong Wigner"); "goe":
            (G + G^T) / sqrt(2).
        value: "identity"; "gaussian": G G^T / sqrt(d); "plus_qk" / "minus_qk": +-B / c with
            c = sqrt(d) (gaussian, wigner_diag), sqrt(d + 1) (goe) or 1 (identity).
        d: dimension.
        rng: numpy Generator.
        size: None for one pair of (d, d) matrices, or an int for (size, d, d) stacks.

    Returns:
        A, V: float64 arrays (d, d) or (size, d, d).
    """
    check_choice("interaction", interaction, INTERACTIONS)
    check_choice("value", value, VALUES)
    d = check_int("d", d, low=1)
    if size is not None:
        size = check_int("size", size, low=1)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    shape = (d, d) if size is None else (size, d, d)
    eye = np.broadcast_to(np.eye(d), shape).copy()
    T = lambda M: np.swapaxes(M, -1, -2)  # noqa: E731
    if interaction == "identity":
        B, c = eye, 1.0
    elif interaction == "gaussian":
        B, c = rng.standard_normal(shape) @ rng.standard_normal(shape) / np.sqrt(d), np.sqrt(d)
    else:
        G = rng.standard_normal(shape)
        B = (G + T(G)) / np.sqrt(2)
        if interaction == "wigner_diag":
            diag = np.arange(d)
            B[..., diag, diag] = G[..., diag, diag]
            c = np.sqrt(d)
        else:
            c = np.sqrt(d + 1)
    if value == "identity":
        V_theirs = eye
    elif value == "gaussian":
        G = rng.standard_normal(shape)
        V_theirs = G @ T(G) / np.sqrt(d)
    else:
        V_theirs = (1.0 if value == "plus_qk" else -1.0) * B / c
    return B, np.ascontiguousarray(T(V_theirs))
