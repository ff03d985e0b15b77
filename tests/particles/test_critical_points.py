"""Riemannian gradient and Hessian of E_beta against torch autograd and closed forms;
classification of symmetric critical points (theory note, sections 1, 4 and §7)."""

import numpy as np
import pytest
import torch

from particles.critical_points import (
    KINDS,
    classify_critical_point,
    cluster_alpha,
    merge_clusters,
    nearby_critical_point,
    plateau_critical_points,
    polygon_configuration,
    refine_critical_point,
    rotation_orbit_basis,
)
from particles.energy_derivatives import energy_gradient, energy_hessian


def random_configuration(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def block_diag(blocks):
    n, d, _ = blocks.shape
    out = np.zeros((n * d, n * d))
    for i in range(n):
        out[i * d : (i + 1) * d, i * d : (i + 1) * d] = blocks[i]
    return out


def composite_derivatives(x, beta):
    """Euclidean gradient and Hessian (autograd, float64) of y -> E(y_i / |y_i|) at y = x.

    At |x_i| = 1 the normalisation has Jacobian P_i, so the gradient is P grad_amb E = grad E,
    and the second derivative of the normalisation adds, on block i,
    -(g_i x_i^T + x_i g_i^T) - <g_i, x_i> I + 3 <g_i, x_i> x_i x_i^T (g_i = grad_amb_i E):
    P (composite Hessian) P = Hess E, and the composite Hessian itself is
    Hess E - blockdiag(grad_i x_i^T + x_i grad_i^T). At beta = 0, E - 1/(2 beta) is used.
    """
    n, d = x.shape

    def f(y):
        z = y.reshape(n, d)
        z = z / z.norm(dim=1, keepdim=True)
        if beta == 0:
            return (z.sum(0) ** 2).sum() / (2 * n**2)
        return torch.exp(beta * z @ z.T).sum() / (2 * beta * n**2)

    y = torch.tensor(x.ravel(), dtype=torch.float64)
    return torch.func.grad(f)(y).numpy().reshape(n, d), torch.func.hessian(f)(y).numpy()


CASES = [(5, 3, 1.7, 0), (4, 2, 0.3, 1), (6, 4, 3.0, 2), (3, 3, 0.0, 3), (2, 5, 2.2, 4)]


@pytest.mark.parametrize("n, d, beta, seed", CASES)
def test_gradient_and_hessian_match_autograd_through_normalisation(n, d, beta, seed):
    x = random_configuration(n, d, seed)
    grad_ref, hess_ref = composite_derivatives(x, beta)
    grad, hess = energy_gradient(x, beta), energy_hessian(x, beta)
    scale = max(1.0, np.abs(hess).max())
    np.testing.assert_allclose(grad, grad_ref, rtol=0, atol=1e-12 * scale)
    P = block_diag(np.eye(d) - x[:, :, None] * x[:, None, :])
    np.testing.assert_allclose(hess, P @ hess_ref @ P, rtol=0, atol=1e-12 * scale)
    correction = block_diag(grad[:, :, None] * x[:, None, :] + x[:, :, None] * grad[:, None, :])
    np.testing.assert_allclose(hess_ref, hess - correction, rtol=0, atol=1e-12 * scale)


def test_hessian_matches_ambient_definition_with_self_terms():
    """Hess = P nabla^2 E P - blockdiag(<x_i, nabla_i E> P_i) with the ambient E (j = i terms
    included, autograd), the definition the closed form implements."""
    n, d, beta = 5, 3, 2.5
    x = random_configuration(n, d, 7)

    def e(y):
        z = y.reshape(n, d)
        return torch.exp(beta * z @ z.T).sum() / (2 * beta * n**2)

    y = torch.tensor(x.ravel())
    g = torch.func.grad(e)(y).numpy().reshape(n, d)
    H = torch.func.hessian(e)(y).numpy()
    proj = np.eye(d) - x[:, :, None] * x[:, None, :]
    P = block_diag(proj)
    ref = P @ H @ P - block_diag((g * x).sum(1)[:, None, None] * proj)
    np.testing.assert_allclose(energy_hessian(x, beta), ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(energy_gradient(x, beta), np.einsum("iab,ib->ia", proj, g), rtol=0, atol=1e-13)


def test_hessian_is_symmetric_tangent_and_kills_normals():
    n, d = 6, 3
    x = random_configuration(n, d, 11)
    H = energy_hessian(x, 1.3)
    assert np.array_equal(H, H.T)
    normals = block_diag(x[:, :, None] * np.ones((1, 1, d)))[:, ::d]  # column i: x_i in block i
    np.testing.assert_allclose(H @ normals, 0, atol=1e-14)
    np.testing.assert_allclose(normals.T @ H, 0, atol=1e-14)


@pytest.mark.parametrize("k, m, d", [(1, 5, 2), (2, 1, 2), (2, 3, 3), (3, 2, 2), (4, 2, 3), (5, 1, 2), (6, 2, 2)])
@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, 5.0])
def test_polygons_are_critical(k, m, d, beta):
    x = polygon_configuration(k, m, d)
    assert np.linalg.norm(energy_gradient(x, beta)) < 1e-12
    # The rotation orbit is in the Hessian's kernel at a critical point.
    orbit = rotation_orbit_basis(x)
    np.testing.assert_allclose(energy_hessian(x, beta) @ orbit, 0, atol=1e-12)


@pytest.mark.parametrize("n, d", [(8, 2), (5, 3)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_single_cluster_is_a_maximum(n, d, beta):
    """Hess = (e^beta / n^2) 11^T (x) P - (e^beta / n) I (x) P: every eigenvalue off the
    rotation orbit (d - 1 dimensions) equals -e^beta / n."""
    c = classify_critical_point(polygon_configuration(1, n, d), beta)
    assert c.kind == "maximum" and c.index == 0 and c.orbit_dimension == d - 1
    assert len(c.eigenvalues) == (n - 1) * (d - 1)
    np.testing.assert_allclose(c.eigenvalues, -np.exp(beta) / n, rtol=1e-12)


@pytest.mark.parametrize("d", [2, 3, 4])
@pytest.mark.parametrize("beta", [0.0, 0.7, 3.0, 10.0])
def test_antipodal_pair_is_a_strict_saddle_for_every_beta(d, beta):
    """x_2 = -x_1: Hess = (e^{-beta}/4) [[P, P], [P, P]]; moving both tokens the same way
    brings them closer at rate e^{-beta}/2 > 0 (d - 1 directions), the opposite way rotates."""
    c = classify_critical_point(polygon_configuration(2, 1, d), beta)
    assert c.kind == "strict saddle" and c.index == d - 1 and c.orbit_dimension == d - 1
    np.testing.assert_allclose(c.eigenvalues, np.exp(-beta) / 2, rtol=1e-12)


@pytest.mark.parametrize("m, beta", [(2, 1.0), (3, 4.0), (4, 8.0)])
def test_antipodal_clusters_closed_form(m, beta):
    """Two antipodal clusters of m tokens (d = 2, n = 2m): one ascent eigenvalue
    2 m e^{-beta} / n^2 (the clusters approach), 2(m - 1) within-cluster eigenvalues
    -(m / n^2)(e^beta - e^{-beta}); so the ascent ratio is 2 / (e^{2 beta} - 1)."""
    n = 2 * m
    c = classify_critical_point(polygon_configuration(2, m), beta, tol=1e-12)
    expected = np.sort(
        np.r_[2 * m * np.exp(-beta) / n**2, np.full(2 * (m - 1), -(m / n**2) * (np.exp(beta) - np.exp(-beta)))]
    )[::-1]
    np.testing.assert_allclose(c.eigenvalues, expected, rtol=1e-9)
    assert c.kind == "strict saddle" and c.index == 1
    np.testing.assert_allclose(c.ascent_ratio, 2 / np.expm1(2 * beta), rtol=1e-9)


@pytest.mark.parametrize("n", [3, 5, 8])
@pytest.mark.parametrize("beta", [0.5, 3.0])
def test_regular_polygon_spectrum_is_the_circulant_one(n, beta):
    """n tokens equally spaced on the circle: in angle coordinates the Hessian is circulant,
    eigenvalues lambda_r = n^{-2} sum_q (beta sin^2 s_q - cos s_q) e^{beta cos s_q}
    (1 - cos(2 pi r q / n)), s_q = 2 pi q / n, r = 1..n-1 (r = 0 is the rotation)."""
    s = 2 * np.pi * np.arange(1, n) / n
    r = np.arange(1, n)[:, None]
    lam = ((beta * np.sin(s) ** 2 - np.cos(s)) * np.exp(beta * np.cos(s)) * (1 - np.cos(r * s[None, :]))).sum(1) / n**2
    c = classify_critical_point(polygon_configuration(n), beta)
    np.testing.assert_allclose(c.eigenvalues, np.sort(lam)[::-1], rtol=1e-10, atol=1e-13 * np.abs(lam).max())
    # Every direction ascends: the uniform polygon is a local minimum of E_beta.
    assert c.kind == "strict saddle" and c.index == n - 1


def test_orbit_dimension():
    for d in (2, 3, 4):
        assert rotation_orbit_basis(random_configuration(6, d, d)).shape[1] == d * (d - 1) // 2
        assert rotation_orbit_basis(polygon_configuration(1, 4, d)).shape[1] == d - 1
    # A planar polygon in R^4 is fixed by the rotations of the orthogonal plane: 6 - 1.
    assert rotation_orbit_basis(polygon_configuration(3, 2, 4)).shape[1] == 5
    basis = rotation_orbit_basis(random_configuration(5, 3, 0))
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-14)


def test_kinds_and_tolerance():
    # 2 clusters at beta = 10: ascent ratio 2/(e^20 - 1) = 4.1e-9, zero at tol = 1e-8.
    x = polygon_configuration(2, 3)
    assert classify_critical_point(x, 10.0, tol=1e-8).kind == "degenerate"
    assert classify_critical_point(x, 10.0, tol=1e-10).kind == "strict saddle"
    c = classify_critical_point(random_configuration(5, 3, 1), 2.0)
    assert c.kind == "not critical" and c.gradient_norm > 1e-3 * c.scale
    assert set(KINDS) == {"maximum", "strict saddle", "degenerate", "not critical"}


def test_refine_finds_an_exact_critical_point():
    beta = 6.0
    x0 = polygon_configuration(3, 4, spread=0.05, seed=0)
    merged, labels = merge_clusters(x0)
    assert labels.max() == 2
    x = refine_critical_point(merged, beta)
    c = classify_critical_point(x, beta)
    assert c.gradient_norm <= 1e-12 * c.scale
    assert c.kind == "strict saddle" and c.index == 2
    # Equal clusters: Newton lands on the regular triangle (up to a rotation).
    np.testing.assert_allclose(cluster_alpha(x), -0.5, atol=1e-10)
    np.testing.assert_allclose(
        c.eigenvalues,
        classify_critical_point(polygon_configuration(3, 4), beta).eigenvalues,
        rtol=1e-8,
        atol=1e-12 * c.scale,
    )


def test_nearby_critical_point_and_plateaus():
    beta = 5.0
    x = polygon_configuration(4, 3, spread=0.02, seed=1)
    found = nearby_critical_point(x, beta)
    assert found.converged and found.clusters == 4
    assert found.critical.kind == "strict saddle"
    assert found.merged.gradient_norm > found.critical.gradient_norm
    assert found.displacement < 0.1
    np.testing.assert_allclose(found.alpha_critical, 0.0, atol=1e-10)
    # A fake two-frame trajectory that stalls at 4 clusters: one (censored) plateau.
    ts = np.array([1.0, 2.0, 4.0])
    out = plateau_critical_points(ts, np.stack([x, x, x]), beta)
    assert len(out) == 1
    system, plateau, censored, result = out[0]
    assert system == 0 and plateau.clusters == 4 and censored
    np.testing.assert_allclose(result.critical.eigenvalues, found.critical.eigenvalues)


def test_cluster_alpha():
    np.testing.assert_allclose(cluster_alpha(polygon_configuration(5, 2)), np.cos(2 * np.pi / 5))
    assert np.isnan(cluster_alpha(polygon_configuration(1, 3)))


def test_bad_inputs():
    x = random_configuration(4, 3, 0)
    with pytest.raises(TypeError, match="x must be a float64 or float32 array"):
        energy_gradient(np.ones((3, 2), dtype=int), 1.0)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        energy_hessian(x[0], 1.0)
    with pytest.raises(ValueError, match=r"d >= 2"):
        energy_gradient(np.ones((3, 1)), 1.0)
    bad = x.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        energy_gradient(bad, 1.0)
    bad = x.copy()
    bad[1] *= 1 + 1e-6
    with pytest.raises(ValueError, match="row 1 has norm"):
        classify_critical_point(bad, 1.0)
    with pytest.raises(ValueError, match="beta must be >= 0.0, got -1.0"):
        energy_hessian(x, -1.0)
    with pytest.raises(TypeError, match="beta must be a real number"):
        energy_gradient(x, "1")
    with pytest.raises(ValueError, match="beta must be finite"):
        energy_gradient(x, np.inf)
    with pytest.raises(ValueError, match="beta must be <= 700"):
        energy_gradient(x, 800.0)
    with pytest.raises(ValueError, match="tol must be < 1"):
        classify_critical_point(x, 1.0, tol=2.0)
    with pytest.raises(ValueError, match="dense Hessian of size"):
        energy_hessian(random_configuration(2049, 2, 0), 1.0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        polygon_configuration(0)
    with pytest.raises(ValueError, match=r"xs must have shape"):
        plateau_critical_points(np.ones(3), np.ones((2, 4, 2)), 1.0)
    with pytest.raises(RuntimeError, match="Newton did not reach"):
        refine_critical_point(random_configuration(6, 3, 2), 4.0, max_iter=1)
