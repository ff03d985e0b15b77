"""The one least-squares line fit of the studies, with a confidence interval on the slope.

Growth rates (``|H| ~ sigma^p``), decay rates (``log ratio ~ s beta``) and scaling laws are
all a straight line through transformed points; :func:`fit_line` fits it and
:func:`fit_power_law` is the log-log case."""

from typing import NamedTuple

import numpy as np
from scipy import stats


class LineFit(NamedTuple):
    """``y ~ slope x + intercept``.

    Attributes:
        slope, intercept: least-squares estimates (NaN with fewer than 3 usable points).
        stderr: standard error of the slope.
        ci: half-width of the slope's confidence interval (Student t, n - 2 degrees).
        num_points: points used.
    """

    slope: float
    intercept: float
    stderr: float
    ci: float
    num_points: int


def fit_line(x, y, *, confidence=0.95):
    """Least-squares line through the finite points of (x, y).

    Example:
        >>> fit = fit_line([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 7.0])
        >>> round(fit.slope, 12), round(fit.intercept, 12), fit.num_points
        (2.0, 1.0, 4)
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    keep = np.isfinite(x) & np.isfinite(y)
    n = int(keep.sum())
    if n < 3 or np.ptp(x[keep]) == 0:
        return LineFit(float("nan"), float("nan"), float("nan"), float("nan"), n)
    res = stats.linregress(x[keep], y[keep])
    half_width = stats.t.ppf(0.5 + confidence / 2, n - 2) * res.stderr
    return LineFit(float(res.slope), float(res.intercept), float(res.stderr), float(half_width), n)


def fit_power_law(x, y, *, x_max=None, confidence=0.95):
    """``y ~ C x^slope``: :func:`fit_line` of (log x, log y) over positive points with x <= x_max.

    Example:
        >>> x = np.array([0.5, 1.0, 2.0, 4.0])
        >>> round(fit_power_law(x, 3 * x**2.5).slope, 12)
        2.5
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    keep = (x > 0) & (y > 0)
    if x_max is not None:
        keep &= x <= x_max * (1 + 1e-12)  # the grid's own end point stays in
    return fit_line(np.log(x[keep]), np.log(y[keep]), confidence=confidence)


def compare_with_theory(theory, low, high, *, confidence=0.95, tolerance=0.0):
    """Whether a theory value lies in a measured interval, said in words with the interval.

    Args:
        theory: the predicted value (exponent, rate).
        low, high: the measured confidence interval.
        confidence: its level, printed.
        tolerance: a systematic allowance added on both sides (e.g. for an asymptotic exponent fitted
            over a finite range), printed when nonzero.

    Returns:
        (agrees, text): True/False, or None where the interval is not finite (no fit), and a phrase
        such as "agrees: theory 1.5 lies in the 95% interval [1.42, 1.61]".

    Example:
        >>> compare_with_theory(1.5, 1.62, 1.86)
        (False, 'disagrees: theory 1.5 lies below the 95% interval [1.62, 1.86]')
        >>> compare_with_theory(2.0, 2.01, 2.02, tolerance=0.05)[1]
        'agrees: theory 2 lies in the 95% interval [2.01, 2.02] +- 0.05'
    """
    interval = f"{confidence:.0%} interval [{low:.3g}, {high:.3g}]" + (f" +- {tolerance:g}" if tolerance else "")
    if not (np.isfinite(low) and np.isfinite(high)):
        return None, f"undetermined: no finite {interval} to compare with theory {theory:g}"
    if low - tolerance <= theory <= high + tolerance:
        return True, f"agrees: theory {theory:g} lies in the {interval}"
    side = "below" if theory < low else "above"
    return False, f"disagrees: theory {theory:g} lies {side} the {interval}"
