r"""Critical points of the interaction energy $E_\beta$ on $(S^{d-1})^n$ (Q = K = V = I):
classification by the Riemannian Hessian, Newton refinement, symmetric configurations.

The dynamics is gradient *ascent* of $E_\beta$ (theory note, section 1): the single
cluster is the maximum, and a critical point with a positive Hessian eigenvalue (an ascent
direction) is a strict saddle, which almost every start escapes (Thm 5.1, §7).

$E_\beta$ is invariant under common rotations $x_i \mapsto R x_i$, so at a critical point
the Hessian vanishes along the orbit $\{(A x_i)_i : A^\top = -A\}$ as well as on the n
normal directions. Both are removed before counting eigenvalues.
"""

import dataclasses

import numpy as np

from .checks import check_configuration, check_int, check_real
from .energy_derivatives import MAX_BETA, SPHERE_TOL, energy_gradient, energy_hessian
from .metastability import MIN_LOG_LENGTH, find_plateaus
from .observables import cluster_labels, count_clusters

__all__ = [
    "KINDS",
    "CriticalPoint",
    "NearbyCriticalPoint",
    "classify_critical_point",
    "cluster_alpha",
    "merge_clusters",
    "nearby_critical_point",
    "plateau_critical_points",
    "polygon_configuration",
    "refine_critical_point",
    "rotation_orbit_basis",
]

KINDS = ("maximum", "strict saddle", "degenerate", "not critical")
# Relative singular value below which a rotation is taken to fix the configuration: the
# orbit of a configuration known to 1e-10 (SPHERE_TOL) is not resolved more finely.
ORBIT_RTOL = 1e-8


@dataclasses.dataclass(frozen=True, eq=False)
class CriticalPoint:
    r"""Classification of a configuration as a critical point of $E_\beta$.

    Attributes:
        beta: the inverse temperature.
        gradient_norm: Frobenius norm of the Riemannian gradient, (n, d).
        eigenvalues: eigenvalues of the Hessian on the tangent space with the orbit of
            common rotations removed, in decreasing order; n(d-1) - orbit_dimension of them.
        orbit_dimension: dimension of the rotation orbit's tangent space (d(d-1)/2 for a
            generic configuration, d - 1 for a single cluster).
        scale: largest |eigenvalue| (the within-cluster stiffness for clustered states).
        tol: the relative tolerance used: |eigenvalue| <= tol * scale counts as zero and
            gradient_norm <= tol * scale as critical.
        index: number of eigenvalues > tol * scale (ascent directions of the dynamics).
        kind: "maximum" (all eigenvalues < -tol * scale), "strict saddle" (index >= 1;
            index equal to the dimension is a local minimum), "degenerate" (index 0 and
            some eigenvalue within tol * scale of zero), or "not critical"
            (gradient_norm > tol * scale; the eigenvalues are still reported).
    """

    beta: float
    gradient_norm: float
    eigenvalues: np.ndarray
    orbit_dimension: int
    scale: float
    tol: float
    index: int
    kind: str

    @property
    def top_eigenvalue(self):
        """The largest eigenvalue (the fastest ascent rate when positive)."""
        return float(self.eigenvalues[0]) if self.eigenvalues.size else 0.0

    @property
    def ascent_ratio(self):
        """top_eigenvalue / scale: escape rate relative to the within-cluster stiffness."""
        return self.top_eigenvalue / self.scale if self.scale > 0 else 0.0


def rotation_orbit_basis(x):
    """Orthonormal basis of the tangent space of the orbit of x under common rotations.

    The span of $\\{(A x_i)_i : A \\in \\mathfrak{so}(d)\\}$, its dimension found by SVD
    (singular values above ORBIT_RTOL times the largest).

    Args:
        x: (n, d) unit rows.

    Returns:
        (n d, r) float64 array with orthonormal columns, r <= d(d-1)/2.
    """
    x = check_configuration("x", x, tol=SPHERE_TOL)
    n, d = x.shape
    a, b = np.triu_indices(d, k=1)
    # (E_ab - E_ba) x_i has x_i[b] in coordinate a and -x_i[a] in coordinate b.
    gens = np.zeros((len(a), n, d))
    rows = np.arange(len(a))
    gens[rows, :, a] = x[:, b].T
    gens[rows, :, b] = -x[:, a].T
    u, s, _ = np.linalg.svd(gens.reshape(len(a), n * d).T, full_matrices=False)
    r = int((s > ORBIT_RTOL * s[0]).sum()) if s.size and s[0] > 0 else 0
    return u[:, :r]


def _tangent_bases(x):
    """(n, d, d-1): orthonormal bases of the tangent spaces x_i^perp (Householder columns)."""
    d = x.shape[1]
    # The reflection swapping e_1 and s x_i (s = sign of x_i1, to avoid cancellation) maps
    # e_2..e_d onto an orthonormal basis of x_i^perp.
    s = np.where(x[:, 0] >= 0, 1.0, -1.0)
    v = x.copy()
    v[:, 0] += s
    refl = np.eye(d) - 2 * v[:, :, None] * v[:, None, :] / (v * v).sum(axis=1)[:, None, None]
    return refl[:, :, 1:]


def _reduced_basis(x):
    """(n d, m) orthonormal basis of the tangent space minus the rotation orbit."""
    n, d = x.shape
    T = _tangent_bases(x)
    orbit = rotation_orbit_basis(x).reshape(n, d, -1)
    # Orbit vectors are tangent, so their tangent coordinates keep inner products.
    orbit_t = np.einsum("iap,iar->ipr", T, orbit).reshape(n * (d - 1), -1)
    r = orbit_t.shape[1]
    if r:
        u = np.linalg.svd(orbit_t, full_matrices=True)[0]
        comp = u[:, r:]
    else:
        comp = np.eye(n * (d - 1))
    full = np.zeros((n, d, n, d - 1))
    full[np.arange(n), :, np.arange(n), :] = T
    return full.reshape(n * d, n * (d - 1)) @ comp, r


def _reduced_hessian(x, beta):
    basis, r = _reduced_basis(x)
    H = basis.T @ energy_hessian(x, beta) @ basis
    return basis, r, (H + H.T) / 2


def classify_critical_point(x, beta, tol=1e-8):
    r"""Classify x as a critical point of $E_\beta$ by its Riemannian Hessian.

    The Hessian is restricted to the tangent space with the n normal directions and the
    rotation orbit (``rotation_orbit_basis``) removed. Tolerances are relative to its
    scale, the largest |eigenvalue| s: eigenvalues within tol * s of zero count as zero,
    and x is critical when |grad E| <= tol * s (gradient and Hessian have the same units
    on the unit sphere). Rounding in the dense Hessian is ~1e-15 * s: keep tol >= ~1e-12.

    Args:
        x: (n, d) unit rows (within 1e-10), n d <= 4096.
        beta: inverse temperature, 0 <= beta <= 700.
        tol: relative tolerance in [1e-14, 1).

    Returns:
        ``CriticalPoint``.
    """
    x = check_configuration("x", x, tol=SPHERE_TOL)
    beta = check_real("beta", beta, low=0.0, high=MAX_BETA)
    tol = check_real("tol", tol, low=1e-14)
    if tol >= 1:
        raise ValueError(f"tol must be < 1 (relative to the Hessian's scale), got {tol}")
    grad_norm = float(np.linalg.norm(energy_gradient(x, beta)))
    _, r, H = _reduced_hessian(x, beta)
    eig = np.linalg.eigvalsh(H)[::-1]
    scale = float(np.abs(eig).max()) if eig.size else 0.0
    index = int((eig > tol * scale).sum())
    if grad_norm > tol * scale:
        kind = "not critical"
    elif index:
        kind = "strict saddle"
    elif eig.size and np.all(eig < -tol * scale):
        kind = "maximum"
    else:
        kind = "degenerate"
    return CriticalPoint(
        beta=beta,
        gradient_norm=grad_norm,
        eigenvalues=eig,
        orbit_dimension=r,
        scale=scale,
        tol=tol,
        index=index,
        kind=kind,
    )


def refine_critical_point(x, beta, *, tol=1e-12, max_iter=200, max_step=0.1):
    """Nearest critical point by Riemannian Newton iteration (finds saddles as well as maxima).

    Each step solves Hess v = -grad on the tangent space with the rotation orbit removed,
    moves each token by at most ``max_step`` (radians, to stay where the quadratic model
    holds; the energy varies on the scale 1/beta), and renormalises the rows.

    Args:
        x: (n, d) unit rows.
        beta: inverse temperature.
        tol: stop when |grad| <= tol * (largest |Hessian eigenvalue|).
        max_iter: iteration limit.
        max_step: largest displacement of a token per step.

    Returns:
        (n, d) float64 critical configuration.

    Raises:
        RuntimeError: no convergence in max_iter steps (the message gives the relative
            gradient reached).
    """
    x = check_configuration("x", x, tol=SPHERE_TOL)
    beta = check_real("beta", beta, low=0.0, high=MAX_BETA)
    tol = check_real("tol", tol, low=1e-15)
    max_iter = check_int("max_iter", max_iter, low=1)
    max_step = check_real("max_step", max_step, low=0.0, low_inclusive=False)
    n, d = x.shape
    for _ in range(max_iter):
        g = energy_gradient(x, beta).ravel()
        basis, _, H = _reduced_hessian(x, beta)
        lam, vec = np.linalg.eigh(H)
        scale = np.abs(lam).max() if lam.size else 0.0
        rel = np.linalg.norm(g) / scale if scale > 0 else 0.0
        if rel <= tol:
            return x
        coef = vec.T @ (basis.T @ g)
        keep = np.abs(lam) > 1e-14 * scale
        step = (basis @ (vec[:, keep] @ (-coef[keep] / lam[keep]))).reshape(n, d)
        longest = np.linalg.norm(step, axis=1).max()
        if longest > max_step:
            step *= max_step / longest
        x = x + step
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    raise RuntimeError(
        f"Newton did not reach |grad| <= {tol:g} * scale in {max_iter} steps (last relative gradient {rel:.3g})"
    )


def merge_clusters(x, tol=1e-3):
    """Each token replaced by its cluster's mean direction (single linkage at 1 - tol).

    Args:
        x: (n, d) unit rows.
        tol: linkage tolerance, as in ``cluster_labels``.

    Returns:
        merged: (n, d) float64, tokens of one cluster equal.
        labels: (n,) int64 cluster labels.
    """
    x = check_configuration("x", x, tol=SPHERE_TOL)
    labels, sizes = cluster_labels(x, tol=tol)
    means = np.zeros((len(sizes), x.shape[1]))
    np.add.at(means, labels, x)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a cluster's tokens sum to zero: no mean direction")
    means /= norms
    return means[labels], labels


def cluster_alpha(x, tol=1e-3):
    """alpha of the metastability theorem: the largest inner product between the mean
    directions of two different clusters (NaN for a single cluster).

    Args:
        x: (n, d) unit rows.
        tol: linkage tolerance, as in ``cluster_labels``.
    """
    return _centre_alpha(*merge_clusters(x, tol))


def _centre_alpha(merged, labels):
    """``cluster_alpha`` from the output of ``merge_clusters``."""
    centres = merged[np.unique(labels, return_index=True)[1]]
    if len(centres) < 2:
        return float("nan")
    gram = centres @ centres.T
    return float(gram[~np.eye(len(centres), dtype=bool)].max())


@dataclasses.dataclass(frozen=True, eq=False)
class NearbyCriticalPoint:
    """A stalled state, its clusters merged, and the exact critical point Newton finds.

    Attributes:
        x: (n, d) the critical configuration (the merged state if Newton failed).
        clusters: cluster count of the input state.
        alpha: ``cluster_alpha`` of the input state.
        alpha_critical: the same for x.
        displacement: largest angle (radians) between a token of the merged state and
            the same token of x.
        converged: Newton reached the tolerance and kept the cluster count.
        merged: ``CriticalPoint`` of the merged state (usually "not critical": the force
            between clusters is small but not zero).
        critical: ``CriticalPoint`` of x.
    """

    x: np.ndarray
    clusters: int
    alpha: float
    alpha_critical: float
    displacement: float
    converged: bool
    merged: CriticalPoint
    critical: CriticalPoint


def nearby_critical_point(x, beta, *, link_tol=1e-3, tol=1e-8, max_iter=200):
    """Merge each cluster of a stalled state to its mean direction, refine by Newton to an
    exact critical point, and classify both.

    Newton keeps merged clusters merged (the within-cluster modes carry no gradient), so it
    solves the k-cluster problem; on the circle, for instance, two clusters are carried to
    the antipodal pair, whatever their angle.

    Args:
        x: (n, d) unit rows (for instance the state at a plateau's midpoint).
        beta: inverse temperature.
        link_tol: cluster linkage tolerance.
        tol: relative tolerance of the classification (``classify_critical_point``).
        max_iter: Newton iteration limit.

    Returns:
        ``NearbyCriticalPoint``.
    """
    x = check_configuration("x", x, tol=SPHERE_TOL)
    merged, labels = merge_clusters(x, link_tol)
    clusters = int(labels.max()) + 1
    try:
        crit = refine_critical_point(merged, beta, tol=min(tol, 1e-12), max_iter=max_iter)
        refined = True
    except RuntimeError:
        crit, refined = merged, False
    crit_merged, crit_labels = merge_clusters(crit, link_tol)
    converged = refined and int(crit_labels.max()) + 1 == clusters
    cos = np.clip((merged * crit).sum(axis=1), -1.0, 1.0)
    return NearbyCriticalPoint(
        x=crit,
        clusters=clusters,
        alpha=_centre_alpha(merged, labels),
        alpha_critical=_centre_alpha(crit_merged, crit_labels),
        displacement=float(np.arccos(cos).max()),
        converged=converged,
        merged=classify_critical_point(merged, beta, tol),
        critical=classify_critical_point(crit, beta, tol),
    )


def polygon_configuration(k, tokens_per_vertex=1, d=2, *, spread=0.0, seed=None):
    """k clusters of equal size at the vertices of a regular k-gon in the (e_1, e_2) plane.

    k = 1 is a single cluster, k = 2 an antipodal pair. Critical for every beta by symmetry
    when spread = 0; spread > 0 prepares the caps of the metastability theorem.

    Args:
        k: number of vertices, >= 1.
        tokens_per_vertex: tokens in each cluster, >= 1.
        d: ambient dimension, >= 2.
        spread: each token is moved by spread times a standard Gaussian vector of R^d and
            renormalised (0: exact clusters).
        seed: seed of the perturbation.

    Returns:
        (k * tokens_per_vertex, d) float64, cluster p in rows p*m .. (p+1)*m - 1.
    """
    k = check_int("k", k, low=1)
    m = check_int("tokens_per_vertex", tokens_per_vertex, low=1)
    d = check_int("d", d, low=2)
    spread = check_real("spread", spread, low=0.0)
    theta = np.repeat(2 * np.pi * np.arange(k) / k, m)
    x = np.zeros((k * m, d))
    x[:, 0], x[:, 1] = np.cos(theta), np.sin(theta)
    if spread > 0:
        x += spread * np.random.default_rng(seed).standard_normal(x.shape)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def plateau_critical_points(ts, xs, beta, *, link_tol=1e-3, tol=1e-8, min_log_length=MIN_LOG_LENGTH):
    """The critical points behind the plateaus of a run's staircase.

    For each plateau with >= 2 clusters (``find_plateaus`` on the cluster counts), the
    state at its midpoint on the log-time axis, sqrt(start * end), goes through
    ``nearby_critical_point``.

    Args:
        ts: (T,) increasing positive saved times.
        xs: (T, n, d) or (T, batch, n, d) states at those times.
        beta: inverse temperature of the run.
        link_tol: cluster linkage tolerance (counts and merging).
        tol: classification tolerance.
        min_log_length: shortest plateau kept, in units of log t.

    Returns:
        list of (system, Plateau, censored, NearbyCriticalPoint) in order of system and
        time; censored means the plateau still runs at ts[-1].
    """
    ts = np.asarray(ts, dtype=np.float64)
    xs = np.asarray(xs)
    if xs.ndim not in (3, 4) or xs.shape[0] != ts.shape[0]:
        raise ValueError(
            f"xs must have shape (T, [batch,] n, d) with T = len(ts) = {ts.shape[0]}, got shape {xs.shape}"
        )
    if xs.ndim == 3:
        xs = xs[:, None]
    counts = count_clusters(xs, tol=link_tol)
    out = []
    for system in range(xs.shape[1]):
        for plateau in find_plateaus(ts, counts[:, system], min_log_length=min_log_length):
            if plateau.clusters < 2:
                continue
            frame = int(np.argmin(np.abs(np.log(ts) - 0.5 * np.log(plateau.start * plateau.end))))
            found = nearby_critical_point(xs[frame, system], beta, link_tol=link_tol, tol=tol)
            out.append((system, plateau, plateau.end >= ts[-1], found))
    return out
