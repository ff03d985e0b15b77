r"""Wasserstein distances between measures on the circle, and on the sphere for d >= 3.

On the circle of length 2 pi (geodesic distance), with cumulative distributions F, G from
the angle 0 (Cabrelli & Molter, 1995; Rabin, Delon & Gousseau, 2011):

$$W_1(\mu, \nu) = \min_{c \in \mathbb{R}} \int_0^{2\pi} |F(\theta) - G(\theta) - c|\, d\theta,$$

the minimum at a median c of F - G under d theta; and (Delon, Salomon & Sobolevski, 2010)

$$W_2^2(\mu, \nu) = (2\pi)^2 \min_{\alpha} \int_0^1 |F^{-1}(t) - G^{-1}(t + \alpha)|^2\, dt,$$

with the quantiles of the measures on [0, 1) extended by G^{-1}(t + 1) = G^{-1}(t) + 1. The
cost is convex in alpha; its minimum over alpha in [-1, 1] is found by golden-section search. Both
integrands are piecewise linear (empirical measures: step CDFs; grid densities: piecewise
constant on the cells, so piecewise linear CDFs), so every integral is exact.

A measure is either a 1-D array of angles (the empirical measure with equal weights) or a
pair ``(theta, density)`` on the uniform grid theta_k = 2 pi k / M (cell averages on the
cells [theta_k - pi / M, theta_k + pi / M]).
"""

import numpy as np

from ..checks import as_float_array, check_configuration, check_finite, check_int
from .grid import check_density, check_theta

TWO_PI = 2.0 * np.pi
# Golden-section steps over the shift alpha in [-1, 1]: 0.618^80 * 2 < 1e-16, the bracket
# shrinks to rounding (Brent's method stops at sqrt(eps) relative, too early where the cost
# is piecewise linear in alpha, as between empirical measures).
GOLDEN_STEPS = 80


class _CircleMeasure:
    """A probability measure on [0, 1): knots x (sorted, x[0] = 0, x[-1] = 1) with the
    cumulative distribution's limits Fm = F(x^-), Fp = F(x^+), linear between knots."""

    def __init__(self, x, Fm, Fp):
        self.x, self.Fm, self.Fp = x, Fm, Fp

    @classmethod
    def from_input(cls, name, value):
        if isinstance(value, tuple):
            if len(value) != 2:
                raise ValueError(f"{name} must be angles or a (theta, density) pair, got a tuple of {len(value)}")
            density = check_density(f"{name}[1]", value[1])
            check_theta(f"{name}[0]", value[0], density.shape[0])
            return cls.from_density(density)
        angles = as_float_array(name, value)
        if angles.ndim != 1 or angles.size < 1:
            raise ValueError(
                f"{name} must be a 1-D array of n >= 1 angles or a (theta, density) pair, got shape {angles.shape}"
            )
        check_finite(name, angles)
        return cls.from_angles(angles.astype(np.float64))

    @classmethod
    def from_angles(cls, angles):
        x = np.sort(np.mod(angles, TWO_PI) / TWO_PI)
        x[x >= 1.0] = 0.0  # mod can round up to the period
        x = np.sort(x)
        atoms, counts = np.unique(x, return_counts=True)
        w = counts / len(x)
        F = np.cumsum(w)
        knots, Fm, Fp = atoms, F - w, F
        if knots[0] > 0:
            knots, Fm, Fp = np.concatenate([[0.0], knots]), np.concatenate([[0.0], Fm]), np.concatenate([[0.0], Fp])
        return cls(np.concatenate([knots, [1.0]]), np.concatenate([Fm, [1.0]]), np.concatenate([Fp, [1.0]]))

    @classmethod
    def from_density(cls, density):
        M = density.shape[0]
        mass = density * TWO_PI / M
        # Cell 0 straddles the angle 0: half of it at the start, half at the end.
        edges = np.concatenate([[0.0], (np.arange(M) + 0.5) / M, [1.0]])
        pieces = np.concatenate([[0.5 * mass[0]], mass[1:], [0.5 * mass[0]]])
        F = np.concatenate([[0.0], np.cumsum(pieces)])
        F /= F[-1]
        return cls(edges, F, F)

    def cdf_limits(self, y):
        """(F(y^-), F(y^+)) at points y in [0, 1]."""
        j = np.clip(np.searchsorted(self.x, y, side="right") - 1, 0, len(self.x) - 2)
        at_knot = self.x[j] == y
        span = self.x[j + 1] - self.x[j]
        inner = self.Fp[j] + (self.Fm[j + 1] - self.Fp[j]) * (y - self.x[j]) / span
        at_end = y >= 1.0
        Fm = np.where(at_knot, self.Fm[j], inner)
        Fp = np.where(at_knot, self.Fp[j], inner)
        return np.where(at_end, 1.0, Fm), np.where(at_end, 1.0, Fp)

    def quantile_knots(self):
        """(t, q): the quantile function, piecewise linear through these points (a repeated t
        is a jump), on t in [0, 1]."""
        t = np.empty(2 * len(self.x))
        q = np.empty_like(t)
        t[0::2], t[1::2] = self.Fm, self.Fp
        q[0::2], q[1::2] = self.x, self.x
        return t, q


def _w1(a, b):
    y = np.union1d(a.x, b.x)
    am, ap = a.cdf_limits(y)
    bm, bp = b.cdf_limits(y)
    start, end = (ap - bp)[:-1], (am - bm)[1:]  # D = F_a - F_b on each piece, linear
    length = np.diff(y)
    keep = length > 0
    start, end, length = start[keep], end[keep], length[keep]
    lo, hi = np.minimum(start, end), np.maximum(start, end)

    def below(c):
        """Length of {D <= c}: nondecreasing in c; the median is where it reaches 1/2."""
        rising = hi > lo
        frac = np.where(rising, np.clip((c - lo) / np.where(rising, hi - lo, 1.0), 0.0, 1.0), (lo <= c) * 1.0)
        return np.sum(length * frac)

    left, right = lo.min(), hi.max()
    for _ in range(200):
        mid = 0.5 * (left + right)
        if mid <= left or mid >= right:
            break
        if below(mid) >= 0.5:
            right = mid
        else:
            left = mid
    c = right

    # Exact integral of |D - c| over each linear piece.
    outside = (c <= lo) | (c >= hi)
    mean_abs = np.abs(0.5 * (start + end) - c)
    span = np.where(outside, 1.0, hi - lo)
    split = ((hi - c) ** 2 + (c - lo) ** 2) / (2.0 * span)
    return TWO_PI * np.sum(length * np.where(outside, mean_abs, split))


def _linear_at(tk, qk, t_query, t_inside):
    """Values at t_query of the linear piece of (tk, qk) that contains t_inside."""
    j = np.clip(np.searchsorted(tk, t_inside, side="right") - 1, 0, len(tk) - 2)
    span = tk[j + 1] - tk[j]
    safe = np.where(span > 0, span, 1.0)
    return qk[j] + (qk[j + 1] - qk[j]) * (t_query - tk[j]) / safe


def _w2_cost(ta, qa, tb, qb, alpha):
    """integral_0^1 |Qa(t) - Qb(t + alpha)|^2 dt, exactly, for alpha in [-1, 1]."""
    # Qb over [-1, 2] from three periods, then shifted by -alpha onto [0, 1].
    tb3 = np.concatenate([tb - 1.0, tb, tb + 1.0]) - alpha
    qb3 = np.concatenate([qb - 1.0, qb, qb + 1.0])
    grid = np.union1d(ta, tb3[(tb3 > 0.0) & (tb3 < 1.0)])
    t0, t1 = grid[:-1], grid[1:]
    keep = t1 > t0
    t0, t1 = t0[keep], t1[keep]
    mid = 0.5 * (t0 + t1)
    d0 = _linear_at(ta, qa, t0, mid) - _linear_at(tb3, qb3, t0, mid)
    d1 = _linear_at(ta, qa, t1, mid) - _linear_at(tb3, qb3, t1, mid)
    return np.sum((t1 - t0) * (d0 * d0 + d0 * d1 + d1 * d1) / 3.0)


def _w2(a, b):
    ta, qa = a.quantile_knots()
    tb, qb = b.quantile_knots()
    cost = lambda alpha: _w2_cost(ta, qa, tb, qb, alpha)
    ratio = 0.5 * (np.sqrt(5.0) - 1.0)
    lo, hi = -1.0, 1.0
    x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    f1, f2 = cost(x1), cost(x2)
    best = min(f1, f2, cost(lo), cost(hi))
    for _ in range(GOLDEN_STEPS):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - ratio * (hi - lo)
            f1 = cost(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + ratio * (hi - lo)
            f2 = cost(x2)
        best = min(best, f1, f2)
    return TWO_PI * np.sqrt(max(best, 0.0))


def wasserstein_circle(a, b, p=1):
    """W_p between two probability measures on the circle (geodesic distance, length 2 pi).

    Args:
        a, b: each a 1-D array of n angles (the empirical measure, weights 1/n; any real
            angles, taken mod 2 pi) or a ``(theta, density)`` pair on the uniform grid
            (theta (M,) = 2 pi k / M, density (M,) cell averages with unit mass).
        p: 1 (closed form with the median shift) or 2 (minimum over the shift).

    Returns:
        float, in radians.

    Raises:
        TypeError, ValueError: bad measures (naming ``a`` or ``b``) or p not in {1, 2}.

    Example:
        >>> import numpy as np
        >>> round(wasserstein_circle(np.array([0.0]), np.array([3.0])), 12)
        3.0
        >>> round(wasserstein_circle(np.array([0.1]), np.array([2 * np.pi - 0.1]), p=2), 12)
        0.2
    """
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    ma = _CircleMeasure.from_input("a", a)
    mb = _CircleMeasure.from_input("b", b)
    return float(_w1(ma, mb) if p == 1 else _w2(ma, mb))


def great_circle_projections(d, projections, seed=0):
    """(projections, d, 2) orthonormal pairs spanning random planes (uniform, by QR)."""
    d = check_int("d", d, low=2)
    projections = check_int("projections", projections, low=1)
    rng = np.random.default_rng(seed)
    gauss = rng.standard_normal((projections, d, 2))
    U, R = np.linalg.qr(gauss)
    return U * np.sign(np.diagonal(R, axis1=1, axis2=2))[:, None, :]


def sliced_wasserstein_sphere(x, y, *, projections=200, seed=0, planes=None):
    """Spherical sliced W_2 (Bonet et al., 2023) between two empirical measures on S^{d-1}.

    Each random great circle (a plane spanned by the orthonormal columns of U) sends x to the
    angle of its projection U^T x; the result is the root mean over planes of W_2^2 between
    the projected measures on the circle (``wasserstein_circle``), in radians.

    Args:
        x: (n, d), y: (m, d) unit rows, d >= 2.
        projections: number of planes; seed: their seed; or planes: (P, d, 2) given.

    Returns:
        float.
    """
    x = check_configuration("x", x, tol=1e-8)
    y = check_configuration("y", y, tol=1e-8)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must live on the same sphere, got dimensions {x.shape[1]} and {y.shape[1]}")
    d = x.shape[1]
    if planes is None:
        planes = great_circle_projections(d, projections, seed)
    else:
        planes = as_float_array("planes", planes)
        if planes.ndim != 3 or planes.shape[1:] != (d, 2):
            raise ValueError(f"planes must have shape (P, {d}, 2), got {planes.shape}")
    total = 0.0
    for U in planes:
        px, py = x @ U, y @ U
        total += wasserstein_circle(np.arctan2(px[:, 1], px[:, 0]), np.arctan2(py[:, 1], py[:, 0]), p=2) ** 2
    return float(np.sqrt(total / len(planes)))


def wasserstein_sphere(x, y, p=2):
    """Exact W_p between two empirical measures on S^{d-1} (geodesic cost), by the POT
    library's network simplex (``pip install attention-dynamics[transport]``); for a few
    thousand points at most.

    Args:
        x: (n, d), y: (m, d) unit rows. p: 1 or 2.

    Returns:
        float, in radians.
    """
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    x = check_configuration("x", x, tol=1e-8)
    y = check_configuration("y", y, tol=1e-8)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must live on the same sphere, got dimensions {x.shape[1]} and {y.shape[1]}")
    try:
        import ot
    except ImportError:
        raise ImportError(
            "wasserstein_sphere needs the POT library: pip install pot, or the 'transport' extra"
        ) from None
    cost = np.arccos(np.clip(x @ y.T, -1.0, 1.0)) ** p
    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    return float(ot.emd2(a, b, cost, numItermax=10_000_000) ** (1.0 / p))
