"""simulations.common.censored_fit: the censored maximum-likelihood line against exact answers."""

import numpy as np
import pytest
from scipy import optimize, stats

from simulations.common.censored_fit import fit_censored_line


def _ols_profile_interval(x, y, confidence):
    """Exact profile-likelihood interval of the Gaussian least-squares slope: RSS(b) = RSS_min + (b - b_hat)^2 Sxx,
    so m log(RSS(b) / RSS_min) = chi2 quantile solves in closed form."""
    slope, intercept = np.polyfit(x, y, 1)
    rss = np.sum((y - intercept - slope * x) ** 2)
    sxx = np.sum((x - x.mean()) ** 2)
    half = np.sqrt((np.exp(stats.chi2.ppf(confidence, 1) / x.size) - 1) * rss / sxx)
    return slope, intercept, np.sqrt(rss / x.size), (slope - half, slope + half)


def test_without_censoring_it_is_least_squares_with_the_exact_profile_interval():
    rng = np.random.default_rng(1)
    x = rng.uniform(2, 12, 40)
    y = 0.3 + 0.8 * x + 0.7 * rng.standard_normal(40)
    fit = fit_censored_line(x, y, np.zeros(40, dtype=bool), confidence=0.9)
    slope, intercept, scale, ci = _ols_profile_interval(x, y, 0.9)
    np.testing.assert_allclose([fit.slope, fit.intercept, fit.scale], [slope, intercept, scale], rtol=1e-7)
    np.testing.assert_allclose(fit.ci, ci, rtol=1e-7)
    assert (fit.num_points, fit.num_censored, fit.confidence) == (40, 0, 0.9)


def test_recovers_the_line_that_censoring_bends_and_covers_it():
    # y = 1 + 2 x + 0.5 e cut at 5: a third of the points are lower bounds. Least squares on the cut
    # values finds a slope near 1.4; the censored likelihood finds 2 within its standard error
    # (about 0.02 here: tolerance 4 standard errors), and its 95% interval holds the truth.
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, 2000)
    y = 1 + 2 * x + 0.5 * rng.standard_normal(x.size)
    censored = y > 5
    fit = fit_censored_line(x, np.minimum(y, 5), censored)
    assert fit.num_censored == censored.sum() > 500
    assert abs(np.polyfit(x, np.minimum(y, 5), 1)[0] - 2) > 0.4
    assert abs(fit.slope - 2) < 0.08 and abs(fit.intercept - 1) < 0.15 and abs(fit.scale - 0.5) < 0.04
    assert fit.ci[0] < 2 < fit.ci[1] and fit.ci[1] - fit.ci[0] < 0.2


def test_a_censored_point_only_pulls_the_line_up():
    # A lower bound far below the line carries almost no information; one far above lifts the slope.
    x = np.arange(8.0)
    y = np.array([0.1, 1.0, 1.9, 3.1, 4.0, 5.1, 5.9, 7.0])
    base = fit_censored_line(x, y, np.zeros(8, dtype=bool))
    low, high = y.copy(), y.copy()
    low[-1], high[-1] = -50.0, 20.0
    only_last = np.arange(8) == 7
    np.testing.assert_allclose(fit_censored_line(x, low, only_last).slope, np.polyfit(x[:7], y[:7], 1)[0], rtol=1e-6)
    assert fit_censored_line(x, high, only_last).slope > base.slope + 0.5


def test_too_few_exact_points_give_nan_and_bad_input_is_refused():
    nan = fit_censored_line([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], np.array([True, True, False]))
    assert np.isnan(nan.slope) and nan.num_censored == 2
    with pytest.raises(ValueError, match="censored"):
        fit_censored_line([1.0, 2.0], [1.0, 2.0], [True])
    with pytest.raises(TypeError, match="censored must be a boolean"):
        fit_censored_line([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0, 1, 0])
    with pytest.raises(ValueError, match="confidence"):
        fit_censored_line([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [False] * 3, confidence=1.0)


def test_the_fit_maximises_an_independently_written_likelihood():
    # Reference: the censored log-likelihood in plain scipy.stats, maximised by Nelder-Mead (no gradients).
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 4, 120)
    y = -1 + 1.5 * x + 0.8 * rng.standard_normal(x.size)
    cut = 3.5
    censored = y > cut
    y = np.minimum(y, cut)

    def negative_log_likelihood(p):
        a, b, log_s = p
        z = (y - a - b * x) / np.exp(log_s)
        return -(np.sum(stats.norm.logpdf(z[~censored]) - log_s) + np.sum(stats.norm.logsf(z[censored])))

    start = [0.0, 1.0, 0.0]
    ref = optimize.minimize(
        negative_log_likelihood, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}
    )
    fit = fit_censored_line(x, y, censored)
    np.testing.assert_allclose([fit.intercept, fit.slope, np.log(fit.scale)], ref.x, atol=1e-5)
    # The interval's ends sit where the profile log-likelihood has dropped by chi2_1(0.95) / 2.
    for end in fit.ci:
        profile = optimize.minimize(
            lambda p: negative_log_likelihood([p[0], end, p[1]]),
            [ref.x[0], ref.x[2]],
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
        )
        assert abs(profile.fun - ref.fun - stats.chi2.ppf(0.95, 1) / 2) < 1e-4
