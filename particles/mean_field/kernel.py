r"""The interaction on the circle as a circular convolution, evaluated by FFT.

For x = (cos theta, sin theta) and Q = q R_a, K = k R_b, V = v R_c (scalar multiples of
rotations R), <Q x, K y> = q k cos(theta - phi + a - b) and the tangential component of V y at
x is v sin(phi + c - theta). The velocity of the continuity equation is therefore

$$u(\theta) = \frac{(G * \rho)(\theta)}{(H * \rho)(\theta)}, \qquad
  H(\psi) = e^{\beta' \cos(\psi + \alpha)}, \quad G(\psi) = v\, H(\psi) \sin(c - \psi),$$

with beta' = beta q k, alpha = a - b and (f * rho)(theta) = integral of f(theta - phi) rho(phi)
dphi; USA has H * rho replaced by 1. Any other Q, K, V breaks the rotation invariance, and
the kernel is no longer a convolution.
"""

import dataclasses

import numpy as np
import scipy.fft

from ..checks import as_float_array, check_finite, check_real

# A (2, 2) matrix counts as a scalar multiple of a rotation within this relative tolerance.
ROTATION_TOL = 1e-12


def rotation_parameters(name, matrix):
    """(scale, angle) of a (2, 2) matrix [[s cos a, -s sin a], [s sin a, s cos a]]; None is
    the identity (1, 0).

    Raises:
        ValueError: not (2, 2), or not a scalar multiple of a rotation (the kernel would
            not be a convolution).
    """
    if matrix is None:
        return 1.0, 0.0
    m = as_float_array(name, matrix)
    if m.shape != (2, 2):
        raise ValueError(f"{name} must be a (2, 2) matrix on the circle, got shape {m.shape}")
    check_finite(name, m)
    m = m.astype(np.float64)
    a, b = 0.5 * (m[0, 0] + m[1, 1]), 0.5 * (m[1, 0] - m[0, 1])
    scale = np.hypot(a, b)
    off = np.abs(m - np.array([[a, -b], [b, a]])).max()
    if off > ROTATION_TOL * max(scale, 1.0):
        raise ValueError(
            f"{name} must be a scalar multiple of a rotation [[s cos a, -s sin a], [s sin a, s cos a]] so that "
            f"the interaction stays a convolution on the circle, got {m.tolist()} (off by {off:.3g})"
        )
    return float(scale), float(np.arctan2(b, a))


@dataclasses.dataclass(frozen=True)
class Interaction:
    """The kernels H, G of the velocity on the circle: beta' = beta q k, alpha, v, c (see the
    module docstring). ``from_matrices`` builds it from beta and Q, K, V."""

    beta: float
    alpha: float = 0.0
    v: float = 1.0
    c: float = 0.0
    dynamics: str = "SA"

    @classmethod
    def from_matrices(cls, beta, Q=None, K=None, V=None, dynamics="SA"):
        beta = check_real("beta", beta, low=0.0)
        q, a = rotation_parameters("Q", Q)
        k, b = rotation_parameters("K", K)
        v, c = rotation_parameters("V", V)
        return cls(beta=beta * q * k, alpha=a - b, v=v, c=c, dynamics=dynamics)

    @property
    def log_scale(self):
        """H and G are stored divided by e^{|beta'|}, their largest possible size."""
        return abs(self.beta)

    def H(self, psi):
        """e^{beta' cos(psi + alpha)} / e^{|beta'|}."""
        return np.exp(self.beta * np.cos(psi + self.alpha) - self.log_scale)

    def G(self, psi):
        """v e^{beta' cos(psi + alpha)} sin(c - psi) / e^{|beta'|}."""
        return self.v * self.H(psi) * np.sin(self.c - psi)

    def speed_bound(self):
        """A bound on |u|: |v| for SA (a weighted mean of sines), |v| e^{|beta'|} for USA."""
        return abs(self.v) * (1.0 if self.dynamics == "SA" else np.exp(self.log_scale))


class FaceVelocity:
    """u at the faces theta_{i+1/2} = theta_i + h / 2 of an M-cell grid, by FFT.

    The convolutions are the midpoint rule h sum_j f(theta_{i+1/2} - theta_j) rho_j, whose
    error is O(h^2) for cell averages (spectrally small for point values of a smooth rho).
    """

    def __init__(self, interaction, M):
        self.interaction = interaction
        h = 2.0 * np.pi / M
        psi = h * np.arange(M) + 0.5 * h  # theta_{i+1/2} - theta_j for i - j = 0..M-1
        self.M = M
        self._G = h * np.fft.rfft(interaction.G(psi))
        self._H = h * np.fft.rfft(interaction.H(psi)) if interaction.dynamics == "SA" else None
        self._usa_factor = np.exp(interaction.log_scale)
        self._bound = interaction.speed_bound()

    def __call__(self, rho):
        """(M,) velocities, u[i] at theta_i + h / 2."""
        # scipy's pocketfft keeps its plans: ~15% faster than numpy's at these sizes.
        spectrum = scipy.fft.rfft(rho)
        num = scipy.fft.irfft(self._G * spectrum, n=self.M)
        if self._H is None:
            u = self._usa_factor * num
        else:
            # Far from the mass Z underflows to FFT rounding and the ratio is noise; the
            # exact ratio is a weighted mean of v sin, so it stays within |v|.
            Z = scipy.fft.irfft(self._H * spectrum, n=self.M)
            u = num / np.maximum(Z, np.finfo(float).tiny)
        return np.clip(u, -self._bound, self._bound)

    def at_centres(self, rho):
        """(M,) velocities X[rho](theta_i) at the cell centres (for the energy identity)."""
        M = self.M
        h = 2.0 * np.pi / M
        psi = h * np.arange(M)
        spectrum = np.fft.rfft(rho)
        num = np.fft.irfft(h * np.fft.rfft(self.interaction.G(psi)) * spectrum, n=M)
        if self._H is None:
            return self._usa_factor * num, np.ones(M)
        Z = np.fft.irfft(h * np.fft.rfft(self.interaction.H(psi)) * spectrum, n=M)
        Z = np.maximum(Z, np.finfo(float).tiny)
        return np.clip(num / Z, -self._bound, self._bound), Z * self._usa_factor
