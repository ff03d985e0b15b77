r"""Is a fixed step small enough for the scheme to approximate the ODE? A bound on the
field's Lipschitz constant on the sphere against the stability limit of the method.

Derivation of the bound. Write b = beta ||A||_2 with A = Q^T K, logits
l_ij = beta <x_i, A x_j> (|l_ij| <= b on the sphere), the unprojected velocity
v_i = sum_j w_ij V x_j and the field F_i = P_{x_i} v_i. Perturb the tokens along tangent
vectors delta_j with max_j |delta_j| = 1 (the norm max over tokens of |.|_2: a matrix norm,
so it also bounds every eigenvalue of the linearisation). The covariant derivative of F is

$$\nabla F_i[\delta] = P_{x_i}\, dv_i[\delta] - \langle x_i, v_i\rangle\, \delta_i,
  \qquad |\nabla F_i[\delta]| \le |dv_i[\delta]| + |v_i|.$$

The logits move by dl_ij = beta (<delta_i, A x_j> + <x_i, A delta_j>). As delta_i is
orthogonal to x_i, |<delta_i, A x_j>| <= sqrt(|A x_j|^2 - <x_i, A x_j>^2), and likewise for
the second term, so with c = l_ij / b in [-1, 1]: |dl_ij| <= 2 b sqrt(1 - c^2).

USA (w_ij = e^{l_ij} / n): dv_i = (1/n) sum_j e^{l_ij} (V delta_j + dl_ij V x_j), so

$$|dv_i| \le \|V\| \big(e^b + \max_{c} 2b\, e^{bc} \sqrt{1 - c^2}\big)
         = \|V\| \big(e^b + 2 e^{b c_*} \sqrt{b c_*}\big),
  \quad c_* = \frac{\sqrt{1 + 4b^2} - 1}{2b},$$

(the maximiser solves b (1 - c^2) = c), and |v_i| <= e^b ||V||. For large b,
2 e^{b c_*} sqrt(b c_*) ~ 2 sqrt(b) e^{b - 1/2}: the authors' USA step correction
dt / max(sqrt(beta) e^{beta - 1/2}, 1) divides dt by this growth.

SA (w_ij = softmax_j l_ij =: p_j): dv_i = sum_j p_j V delta_j + Cov_p(dl_i., V x), with
s^2 = 1 - |E_p x|^2 the spread of the attended tokens. Split dl into its two terms:
beta Cov_p(<A^T delta_i, x>, V x) has norm <= b ||V|| s^2 (the covariance of x has trace
s^2), and Cov_p(beta <x_i, A delta_j>, V x) <= b ||V|| s (a variable in [-b, b] has standard
deviation <= b; that of V x is <= ||V|| s). With |v_i| = |V E_p x| <= ||V|| sqrt(1 - s^2):

$$L \le \|V\| \max_{s \in [0, 1]} \big(1 + b(s + s^2) + \sqrt{1 - s^2}\big)
    \le \|V\| \big(1 + 2b + \min(1, 1/(4b))\big),$$

(put s = 1 - e: b(s + s^2) <= 2b - 2be and sqrt(1 - s^2) <= sqrt(2e); the maximum over e
of sqrt(2e) - 2be is 1/(4b)). The bound is nearly attained: tokens at right angles to x_i,
spread evenly (E_p x = 0), with perturbations correlated with their positions, give 2b.

Threshold. For Q^T K symmetric and V = I both dynamics are gradient flows (Geshkovski et
al., 2023), so the linearisation at the configurations the runs settle into has real
eigenvalues, of modulus <= L. Explicit Euler is stable on [-2, 0] of the real axis
(|1 + z| <= 1), classical RK4 on [-2.785, 0] (|1 + z + z^2/2 + z^3/6 + z^4/24| <= 1):
past dt L above these limits the discrete dynamics need not follow the ODE, even
qualitatively (USA, Euler, beta = 10, dt = 0.1: 7-18 clusters at t = 0.3 where the ODE
has 2-3). Measured margins: SA with Q = K = V = I, beta = 9, dt = 0.1 (the authors' phase
diagram) gives dt L = 1.90 (2.0 at beta = 9.5); the authors' USA step correction gives
dt L <= 0.57 at every beta (the largest near beta = 0.7, where the correction starts;
0.1 (2 e^{1/2} / sqrt(beta) + 2 + o(1)) for large beta).
"""

import math
import warnings

import numpy as np
import torch

from ._params import DYNAMICS, METHODS
from .checks import check_choice, check_real

# Largest dt |lambda| on the negative real axis where the method is stable (see above).
STABILITY_LIMITS = {"euler": 2.0, "rk4": 2.785}


class StepSizeWarning(UserWarning):
    """A fixed step too large for the scheme to approximate the ODE (see ``check_step``)."""


def lipschitz_bound(beta, A=None, V=None, dynamics="SA"):
    """An upper bound on the Lipschitz constant of the field on the sphere (module docstring).

    Args:
        beta: inverse temperature, >= 0.
        A: None (identity), (d, d) or (batch, d, d) interaction matrix Q^T K; the largest
            bound over the batch is returned.
        V: None (identity), (d, d) or (batch, d, d) value matrix.
        dynamics: "SA" or "USA".

    Returns:
        float, inf where e^{beta ||A||} overflows.
    """
    beta = check_real("beta", beta, low=0.0)
    check_choice("dynamics", dynamics, DYNAMICS)
    b = beta * _largest_norm(A)
    v = _largest_norm(V)
    if dynamics == "SA":
        return v * (1.0 + 2.0 * b + (min(1.0, 1.0 / (4.0 * b)) if b > 0 else 1.0))
    if b > 700.0:  # e^b overflows float64
        return math.inf
    c = (math.sqrt(1.0 + 4.0 * b * b) - 1.0) / (2.0 * b) if b > 0 else 0.0
    return v * (2.0 * math.exp(b) + 2.0 * math.exp(b * c) * math.sqrt(b * c))


def check_step(beta, dt, *, A=None, V=None, dynamics="SA", method="euler", stacklevel=1):
    """Warn, once, when dt is too large for the fixed-step ``method`` to follow the ODE.

    The warning (``StepSizeWarning``) fires when dt * L exceeds the method's stability
    limit on the real axis (2 for "euler", 2.785 for "rk4"), L = ``lipschitz_bound``. It
    names beta, dt and the method and points to a smaller dt, "rk4"/"dopri5" or the
    authors' USA step correction. "dopri5" chooses its own steps: never a warning.

    Args:
        beta, dt: inverse temperature (>= 0) and step (> 0).
        A, V, dynamics: as in ``lipschitz_bound``.
        method: "euler", "rk4" or "dopri5".
        stacklevel: the frame the warning points at, counted as ``warnings.warn`` does
            from the caller of ``check_step`` (1: the line that calls it; 2: its caller).

    Returns:
        The warning's message, or None when the step is small enough.
    """
    beta = check_real("beta", beta, low=0.0)
    dt = check_real("dt", dt, low=0.0, low_inclusive=False)
    check_choice("method", method, METHODS)
    if method not in STABILITY_LIMITS:
        return None
    limit = STABILITY_LIMITS[method]
    bound = lipschitz_bound(beta, A, V, dynamics)
    ratio = dt * bound
    if ratio <= limit:
        return None
    safe_dt = limit / bound
    advice = [f"dt <= {safe_dt:.3g}"]
    if method == "euler":
        advice.append(f"'rk4' with dt <= {STABILITY_LIMITS['rk4'] / bound:.3g}")
    advice.append("'dopri5' (adaptive)")
    if dynamics == "USA":
        advice.append("the authors' USA step correction dt / max(sqrt(beta) e^(beta - 1/2), 1)")
    message = (
        f"dt = {dt:g} is too large for method {method!r} at beta = {beta:g} ({dynamics}): "
        f"dt times the field's Lipschitz bound is {ratio:.3g} > {limit:g}, the method's "
        f"stability limit, so the steps need not follow the ODE. Use "
        + ", or ".join(advice)
        + ". To keep the discrete scheme regardless, filter particles.StepSizeWarning."
    )
    warnings.warn(message, StepSizeWarning, stacklevel=stacklevel + 1)
    return message


def _largest_norm(M):
    """The largest spectral norm of a (d, d) or (batch, d, d) matrix; 1 for None."""
    if M is None:
        return 1.0
    M = np.asarray(M, dtype=np.float64)
    if M.shape[-1] > 8:  # NumPy's BLAS threads would slow a following torch field (_dense_field)
        return float(torch.linalg.matrix_norm(torch.from_numpy(M), ord=2).max())
    return float(np.linalg.norm(M, ord=2, axis=(-2, -1)).max())
