"""Random Q, K, V of the authors' phase-diagram code (Geshkovski et al., 2023; theory note,
section 2), in this package's convention.

The authors write logits beta x_i^T B x_j and values v V (row vectors). Here logits are
beta <Q x_i, K x_j> = beta x_i^T (Q^T K) x_j and values V x_j, so B plays A = Q^T K and
their V is our V^T. ``draw`` returns ``DrawnMatrices(Q, K, V)`` in our convention, with Q = I
and K = B, which give exactly their dynamics::

    m = particles.ensembles.draw("goe", "minus_qk", 2, np.random.default_rng(0))
    particles.simulate(x0, beta=4.0, t_max=10.0, dt=0.1, Q=m.Q, K=m.K, V=m.V)
"""

from typing import NamedTuple

import numpy as np

from .checks import check_choice, check_int

__all__ = ["INTERACTIONS", "VALUES", "DrawnMatrices", "draw"]

#: Choices for B = Q^T K.
INTERACTIONS = ("identity", "gaussian", "wigner_diag", "goe")
#: Choices for V.
VALUES = ("identity", "gaussian", "plus_qk", "minus_qk")


class DrawnMatrices(NamedTuple):
    """One draw of the attention matrices, in ``particles.simulate``'s convention.

    Attributes:
        Q: (d, d) identity: the dynamics depend on Q and K only through Q^T K, so the draw
            sits in K.
        K: (d, d) or (size, d, d), the authors' bilinear form B.
        V: (d, d) or (size, d, d), the value matrix (the transpose of the authors' V).
    """

    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray

    @property
    def A(self):
        """Q^T K, (d, d) or (size, d, d): the logit of (i, j) is beta <x_i, A x_j>."""
        return np.swapaxes(self.Q, -1, -2) @ self.K


def draw(interaction, value, d, rng, size=None):
    """Draw the Q, K, V of the authors' ensembles: Q = I, K = B, V.

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
        ``DrawnMatrices(Q, K, V)``: float64, Q (d, d), K and V (d, d) or (size, d, d);
        ``.A`` is Q^T K (= K).

    Example:
        >>> m = draw("gaussian", "plus_qk", 3, np.random.default_rng(0), size=5)
        >>> m.Q.shape, m.K.shape, m.V.shape
        ((3, 3), (5, 3, 3), (5, 3, 3))
        >>> bool(np.array_equal(m.A, m.K))
        True
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
    return DrawnMatrices(Q=np.eye(d), K=B, V=np.ascontiguousarray(T(V_theirs)))
