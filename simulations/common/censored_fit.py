"""A straight line through points some of which are only lower bounds (right-censored data).

A plateau still running when a simulation stops at t_max lasted *at least* as long as measured.
A least-squares line through such durations bends down at large beta, where most of them are
cut. :func:`fit_censored_line` fits the Gaussian linear model ``y = intercept + slope x + scale e``
by maximum likelihood knowing which points are censored (Tobin, 1958): an exact point contributes
its density, a censored one the probability of lying above it,

    log L = sum over exact points of log(phi((y_i - mu_i) / s) / s)
          + sum over censored points of log(1 - Phi((y_i - mu_i) / s)),   mu_i = a + b x_i,

and gives the slope's confidence interval from the profile likelihood (the set of slopes whose
likelihood-ratio statistic stays below the chi-squared quantile), which stays valid when the
likelihood is lopsided, as it is when many points are censored.
"""

from typing import NamedTuple

import numpy as np
from scipy import optimize, stats


class CensoredLineFit(NamedTuple):
    """``y ~ slope x + intercept`` with Gaussian scatter of standard deviation ``scale``.

    Attributes:
        slope, intercept, scale: maximum-likelihood estimates (NaN when the fit is not possible:
            fewer than 3 points, fewer than 2 exact ones, or a single x).
        ci: (low, high) confidence interval of the slope from the profile likelihood; an end is
            infinite where the likelihood does not fall enough on that side.
        confidence: the interval's level.
        num_points, num_censored: points used, and how many of them are lower bounds.
    """

    slope: float
    intercept: float
    scale: float
    ci: tuple
    confidence: float
    num_points: int
    num_censored: int


def fit_censored_line(x, y, censored, *, confidence=0.95):
    """Maximum-likelihood line through (x, y) where ``y[censored]`` are lower bounds.

    Args:
        x, y: (m,) points; non-finite ones are left out.
        censored: (m,) bool: True where the true y is only known to be >= the given y.
        confidence: level of the slope's interval, in (0, 1).

    Returns:
        a ``CensoredLineFit``. With no censored point it is the least-squares line, with
        ``scale`` the maximum-likelihood sqrt(RSS / m).

    Raises:
        ValueError: the arrays are not 1-D of one length, or ``confidence`` is outside (0, 1).
        TypeError: ``censored`` is not boolean.

    Example:
        >>> fit = fit_censored_line([0.0, 1.0, 2.0, 3.0], [1.0, 3.1, 4.9, 7.0], [False] * 4)
        >>> round(fit.slope, 6), fit.num_censored
        (1.98, 0)
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    censored = np.asarray(censored)
    if x.ndim != 1 or x.shape != y.shape or censored.shape != x.shape:
        raise ValueError(
            f"x, y and censored must be 1-D of one length, got shapes {x.shape}, {y.shape} and {censored.shape}"
        )
    if censored.size and censored.dtype != np.bool_:
        raise TypeError(f"censored must be a boolean array, got dtype {censored.dtype}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, censored = x[keep], y[keep], censored[keep].astype(bool)
    m, m_censored = int(x.size), int(censored.sum())
    if m < 3 or m - m_censored < 2 or np.ptp(x) == 0:
        return CensoredLineFit(np.nan, np.nan, np.nan, (np.nan, np.nan), confidence, m, m_censored)
    # Centring x decouples the intercept from the slope: better conditioned optimisation.
    x0 = x.mean()
    xc = x - x0
    slope, intercept = np.polyfit(xc, y, 1)
    scale = max(np.std(y - intercept - slope * xc), 1e-3 * max(np.std(y), 1e-12))
    best = _minimize(lambda p: _nll_and_grad(p, xc, y, censored), [intercept, slope, np.log(scale)])
    intercept, slope, log_scale = best.x
    nll_min = best.fun
    threshold = stats.chi2.ppf(confidence, 1) / 2  # on the negative log-likelihood

    def excess(b):
        """Profile negative log-likelihood at slope b, above its minimum, minus the threshold."""
        profile = _minimize(lambda p: _nll_and_grad_fixed_slope(p, b, xc, y, censored), [intercept, log_scale])
        return profile.fun - nll_min - threshold

    # Bracket each end by steps that double, starting from the curvature scale of the slope.
    step = np.exp(log_scale) / np.sqrt(np.sum(xc**2))
    ends = []
    for direction in (-1.0, 1.0):
        inner, outer = slope, slope + direction * step
        for _ in range(60):
            if excess(outer) > 0:
                ends.append(
                    optimize.brentq(excess, min(inner, outer), max(inner, outer), xtol=1e-10 * (1 + abs(slope)))
                )
                break
            inner, outer = outer, slope + 2 * (outer - slope)
        else:
            ends.append(direction * np.inf)
    return CensoredLineFit(
        float(slope),
        float(intercept - slope * x0),
        float(np.exp(log_scale)),
        (float(ends[0]), float(ends[1])),
        confidence,
        m,
        m_censored,
    )


def _minimize(fun, start):
    result = optimize.minimize(
        fun, np.asarray(start, dtype=np.float64), jac=True, method="BFGS", options={"gtol": 1e-10}
    )
    # BFGS may stop on a precision loss next to the optimum; a polish from there settles it.
    if not result.success:
        result = optimize.minimize(fun, result.x, jac=True, method="L-BFGS-B")
    return result


def _nll_and_grad(params, x, y, censored):
    """Negative log-likelihood of (intercept, slope, log scale) and its gradient."""
    a, b, log_s = params
    value, d_mu, d_log_s = _nll_parts(a + b * x, log_s, y, censored)
    return value, np.array([d_mu.sum(), (d_mu * x).sum(), d_log_s])


def _nll_and_grad_fixed_slope(params, b, x, y, censored):
    a, log_s = params
    value, d_mu, d_log_s = _nll_parts(a + b * x, log_s, y, censored)
    return value, np.array([d_mu.sum(), d_log_s])


def _nll_parts(mu, log_s, y, censored):
    """The negative log-likelihood, its derivative in each mu_i, and in log s."""
    s = np.exp(log_s)
    z = (y - mu) / s
    exact = ~censored
    value = np.sum(0.5 * z[exact] ** 2 + log_s + 0.5 * np.log(2 * np.pi)) - np.sum(stats.norm.logsf(z[censored]))
    # Inverse Mills ratio phi / (1 - Phi), in logs so that it stays finite far in the tail.
    hazard = np.exp(stats.norm.logpdf(z[censored]) - stats.norm.logsf(z[censored]))
    d_mu = np.empty_like(z)
    d_mu[exact] = -z[exact] / s
    d_mu[censored] = -hazard / s
    d_log_s = np.sum(1.0 - z[exact] ** 2) - np.sum(hazard * z[censored])
    return value, d_mu, d_log_s
