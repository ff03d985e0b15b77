"""particles.mean_field.kernel: the FFT convolution against a direct double sum and against
the exact integral."""

import numpy as np
import pytest
from scipy.special import iv

from particles.mean_field import grid, normalise
from particles.mean_field.kernel import FaceVelocity, Interaction


def rotation(scale, angle):
    c, s = np.cos(angle), np.sin(angle)
    return scale * np.array([[c, -s], [s, c]])


def direct_velocity(rho, beta, Q, K, V, dynamics):
    """u at the faces from the field of the particle model: the (M, M) sums of
    e^{beta <Q x, K y>} <e_theta, V y> and e^{beta <Q x, K y>} with weights rho_j h."""
    M = len(rho)
    h = 2 * np.pi / M
    faces = grid(M) + h / 2
    x = np.stack([np.cos(faces), np.sin(faces)], 1)
    tangent = np.stack([-np.sin(faces), np.cos(faces)], 1)
    y = np.stack([np.cos(grid(M)), np.sin(grid(M))], 1)
    weights = np.exp(beta * (x @ Q.T) @ (y @ K.T).T) * rho * h
    num = np.sum(weights * (tangent @ (y @ V.T).T), axis=1)
    return num / weights.sum(1) if dynamics == "SA" else num


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_fft_velocity_matches_the_particle_field(dynamics, rng):
    M = 48
    rho = normalise(rng.random(M))
    Q, K, V = rotation(1.3, 0.4), rotation(0.8, -1.1), rotation(0.7, 0.9)
    fv = FaceVelocity(Interaction.from_matrices(3.0, Q, K, V, dynamics), M)
    np.testing.assert_allclose(fv(rho), direct_velocity(rho, 3.0, Q, K, V, dynamics), rtol=1e-12, atol=1e-13)


def test_velocity_of_a_cosine_density_is_exact():
    # rho = (1 + a cos phi) / (2 pi): USA u(theta) = -a I_1(beta) / beta sin(theta), exactly.
    M, a, beta = 64, 0.4, 2.5
    theta = grid(M)
    rho = (1 + a * np.cos(theta)) / (2 * np.pi)
    u = FaceVelocity(Interaction(beta=beta, dynamics="USA"), M)(rho)
    faces = theta + np.pi / M
    np.testing.assert_allclose(u, -a * iv(1, beta) / beta * np.sin(faces), rtol=0, atol=1e-14)


def test_matrices_that_are_not_rotations_are_refused():
    with pytest.raises(ValueError, match="Q must be a scalar multiple of a rotation"):
        Interaction.from_matrices(1.0, Q=np.diag([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"V must be a \(2, 2\) matrix"):
        Interaction.from_matrices(1.0, V=np.eye(3))
