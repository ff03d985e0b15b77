r"""Linear stability of the uniform density on the circle.

Around rho = 1 / (2 pi) + eps e^{i k theta}, the velocity is u = u_0 + eps u_k e^{i k theta}
+ O(eps^2), and the linearised continuity equation d rho'/dt = -d/dtheta(u_0 rho' + u' / (2 pi))
gives rho' ~ e^{lambda_k t} e^{i k theta} with

$$\lambda_k = -ik\Big(u_0 + \frac{\hat G_k - u_0 \hat H_k}{2\pi \bar Z}\Big), \qquad
  \hat f_k = \int_0^{2\pi} f(\psi) e^{-ik\psi}\,d\psi,$$

for the kernels H, G of ``kernel`` (beta' = beta q k, shift alpha, V = v R_c): Z = H_0 / (2 pi)
= I_0(beta'), u_0 = G_0 / H_0 for SA; Z = 1 and the H terms dropped for USA. From
e^{beta' cos(psi + alpha)} = sum_m I_m(beta') e^{i m (psi + alpha)},

    H_k = 2 pi I_k(beta') e^{i k alpha},
    G_k = (pi v / i) (I_{k+1}(beta') e^{i(k+1) alpha + i c} - I_{k-1}(beta') e^{i(k-1) alpha - i c}).

With Q = K = V = I, I_{k-1} - I_{k+1} = (2k / beta) I_k makes the rates real:

    USA: lambda_k = k^2 I_k(beta) / beta,        SA: lambda_k = k^2 I_k(beta) / (beta I_0(beta)),

positive for every k >= 1 and beta > 0 (the uniform density is unstable; the fastest mode is
the k maximising k^2 I_k(beta), about sqrt(beta) modes for large beta); beta = 0 gives
lambda_k = k^2 / 2 for k = 1 and 0 otherwise (the limit of I_1(beta) / beta).
"""

import numpy as np
from scipy.special import ive

from ..checks import check_choice
from .kernel import Interaction


def growth_rates(ks, *, beta, dynamics="SA", Q=None, K=None, V=None):
    """Complex rates lambda_k of the Fourier modes e^{i k theta} around the uniform density.

    Real part: growth rate; imaginary part: minus k times the phase speed.

    Args:
        ks: integer wave numbers (any shape). beta: >= 0. dynamics: "SA" or "USA".
        Q, K, V: None or (2, 2) scalar multiples of rotations.

    Returns:
        complex array of the shape of ``ks``.

    Example:
        >>> from scipy.special import iv
        >>> rate = growth_rates([2], beta=3.0, dynamics="USA")[0]
        >>> bool(np.isclose(rate, 4 * iv(2, 3.0) / 3.0, rtol=1e-13))
        True
    """
    dynamics = check_choice("dynamics", dynamics, ("SA", "USA"))
    it = Interaction.from_matrices(beta, Q, K, V, dynamics)
    ks = np.asarray(ks)
    if not np.issubdtype(ks.dtype, np.integer):
        raise TypeError(f"ks must be integer wave numbers, got dtype {ks.dtype}")
    b = abs(it.beta)
    sign = 1.0 if it.beta >= 0 else -1.0  # I_m(-b) = (-1)^m I_m(b)

    def bessel(m):
        # I_m scaled by e^{-|beta'|}: the common factor cancels in SA and is put back for USA.
        m = np.abs(m)
        return ive(m, b) * sign**m

    def G_hat(k):
        return (np.pi * it.v / 1j) * (
            bessel(k + 1) * np.exp(1j * ((k + 1) * it.alpha + it.c))
            - bessel(k - 1) * np.exp(1j * ((k - 1) * it.alpha - it.c))
        )

    if dynamics == "USA":
        scale = np.exp(b)
        u0 = scale * G_hat(0) / (2 * np.pi)
        return -1j * ks * (u0 + scale * G_hat(ks) / (2 * np.pi))
    H0 = 2 * np.pi * bessel(0)
    u0 = G_hat(0) / H0
    H_k = 2 * np.pi * bessel(ks) * np.exp(1j * ks * it.alpha)
    return -1j * ks * (u0 + (G_hat(ks) - u0 * H_k) / H0)
