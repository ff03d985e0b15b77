"""Calibration of the stochastic estimators: are the reported standard errors the real spread?

Each case draws ``NUM_SEEDS`` independent estimates (probe seeds ``BASE_SEED + s``) of a quantity
known exactly (dense linear algebra on a fixed matrix) and runs three checks:

- coverage: the number of ``value +- 2 stderr`` intervals containing the exact value lies in the
  binomial band of ``Binomial(NUM_SEEDS, p)``, where ``p = P(|t_{S-1}| <= 2)`` is the coverage of a
  mean of S normal samples with its sample standard error (0.946 for S = 32, not 0.954);
- mean: a t-test of ``mean(values) - exact`` over the seeds (a 5% bias moves t by >= 25);
- spread: ``(R - 1) var(values) / mean(stderr^2)`` lies in the chi-square band with R - 1 degrees
  of freedom: the stderr is the standard deviation of the estimate (sqrt(2) off either way fails).

Every test also plants a 5% bias (both signs) and a stderr off by sqrt(2) (both ways) into the same
draws and asserts that the check meant to catch it fails, so the checks have the power they claim.

False-failure rate: each check rejects with probability ``ALPHA_PER_CHECK = 2e-5`` when the
estimates are normal; 3 checks x 6 cases give < 4e-4 for the whole file. The probe counts make the
normal approximation accurate: over 10^4 seeds the coverage of every case is within 0.35% of p (0.3
binomial standard deviations at 400 seeds) and var / mean(stderr^2) within 0.035 of 1; the file
passes for 20 other base seeds. The sizes (n <= 64, 400 seeds) keep it at ~4 s, most of it in
SLQ's Python-level Lanczos loop.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from hessian.estimators import diagonal, frobenius_norm, spectral_density, trace

NUM_SEEDS = 400
BASE_SEED = 0
ALPHA_PER_CHECK = 2e-5
# the factor by which a stderr "off by sqrt(2)" is wrong
SQRT2 = np.sqrt(2.0)


def spd_with_spectrum(eigenvalues: np.ndarray, seed: int) -> np.ndarray:
    """``U diag(eigenvalues) U^T`` with a Haar-like random orthogonal U."""
    n = eigenvalues.size
    U, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    A = (U * eigenvalues) @ U.T
    return (A + A.T) / 2


def symmetric_circulant(n: int, seed: int) -> np.ndarray:
    """Diagonal 4, off-diagonals ~ N(0, 0.1^2): every diagonal entry's estimate has the same law.

    A circulant row is a permutation of the first, so the Hutchinson diagonal's entries have one law
    and one entry per seed gives independent, identically distributed trials. The diagonal stands
    well clear of zero so that a multiplicative 5% bias is visible.
    """
    half = np.random.default_rng(seed).standard_normal(n // 2 + 1) * 0.1
    half[0] = 4.0
    first_row = np.concatenate([half, half[1:-1][::-1]])
    return first_row[(np.arange(n)[None, :] - np.arange(n)[:, None]) % n]


@dataclass(frozen=True)
class Case:
    """draw(seed) -> (value, stderr) of one estimate; ``num_probes`` samples behind each stderr."""

    draw: Callable[[int], tuple[float, float]]
    exact: float
    num_probes: int


def make_cases() -> dict[str, Case]:
    n = 64
    # flat spectrum: Hutchinson's relative standard error is ~1.5% with 32 probes
    flat = spd_with_spectrum(np.linspace(0.1, 1.0, n), seed=0)
    # 1/i decay: the regime Hutch++ is built for; 48 products = sketch 16, range 16, 16 probes
    decaying = spd_with_spectrum(1.0 / np.arange(1, n + 1), seed=1)
    circulant = symmetric_circulant(n, seed=2)
    # SLQ: 12 Gauss nodes integrate log on [0.1, 1] and a Gaussian kernel of width 0.2 to a
    # relative 1e-8 per probe (checked against v^T f(A) v), far below the 0.2% standard error of
    # the mean over seeds
    slq_eigenvalues = np.linspace(0.1, 1.0, 48)
    slq_matrix = spd_with_spectrum(slq_eigenvalues, seed=3)
    x0, width = 0.5, 0.2

    def hutchinson(seed):
        est = trace(flat, method="hutchinson", num_samples=32, seed=seed)
        return est.value, est.stderr

    def hutchpp(seed):
        est = trace(decaying, method="hutchpp", num_samples=48, seed=seed)
        return est.value, est.stderr

    def frobenius(seed):
        est = frobenius_norm(flat, method="hutchinson", num_samples=32, seed=seed)
        return est.value, est.stderr

    def diagonal_entry(seed):
        est = diagonal(circulant, method="hutchinson", num_samples=32, seed=seed)
        return est.value[seed % n], est.stderr[seed % n]

    # both SLQ cases read the same draws: the Lanczos loop is most of this file's time
    @functools.cache
    def slq(seed):
        grid = np.array([x0])
        return spectral_density(slq_matrix, num_probes=20, num_steps=12, grid=grid, kernel_width=width, seed=seed)

    def slq_logdet(seed):
        est = slq(seed).expectation(np.log)
        return est.value, est.stderr

    def slq_density(seed):
        sd = slq(seed)
        return sd.density[0], sd.stderr[0]

    kernel = np.exp(-0.5 * ((x0 - slq_eigenvalues) / width) ** 2) / (width * np.sqrt(2 * np.pi))
    return {
        "hutchinson_trace": Case(hutchinson, np.trace(flat), 32),
        "hutchpp_trace": Case(hutchpp, np.trace(decaying), 48 - 2 * (48 // 3)),
        "frobenius_norm": Case(frobenius, np.linalg.norm(flat), 32),
        "hutchinson_diagonal": Case(diagonal_entry, circulant[0, 0], 32),
        "slq_logdet": Case(slq_logdet, np.sum(np.log(slq_eigenvalues)), 20),
        "slq_density": Case(slq_density, np.mean(kernel), 20),
    }


CASES = make_cases()


def calibration_failures(values: np.ndarray, stderrs: np.ndarray, exact: float, num_probes: int) -> dict[str, str]:
    """Failed checks, name -> message, among "coverage", "mean" and "spread" (module docstring)."""
    R = values.size
    failures = {}
    nominal = 2 * stats.t.cdf(2.0, num_probes - 1) - 1
    covered = int(np.sum(np.abs(values - exact) <= 2 * stderrs))
    # ppf: P(covered < low) < ALPHA/2; isf: P(covered > high) <= ALPHA/2
    low = stats.binom.ppf(ALPHA_PER_CHECK / 2, R, nominal)
    high = stats.binom.isf(ALPHA_PER_CHECK / 2, R, nominal)
    if not low <= covered <= high:
        failures["coverage"] = f"{covered}/{R} intervals cover, band [{low:.0f}, {high:.0f}] at p={nominal:.4f}"
    spread = np.std(values, ddof=1)
    t = (np.mean(values) - exact) / (spread / np.sqrt(R))
    t_max = stats.t.isf(ALPHA_PER_CHECK / 2, R - 1)
    if not abs(t) <= t_max:
        failures["mean"] = f"mean {np.mean(values):.6g} vs exact {exact:.6g}: |t|={abs(t):.2f} > {t_max:.2f}"
    q = (R - 1) * spread**2 / np.mean(stderrs**2)
    q_low = stats.chi2.ppf(ALPHA_PER_CHECK / 2, R - 1)
    q_high = stats.chi2.isf(ALPHA_PER_CHECK / 2, R - 1)
    if not q_low <= q <= q_high:
        failures["spread"] = (
            f"var(values)/mean(stderr^2) = {q / (R - 1):.3f}, band [{q_low / (R - 1):.3f}, {q_high / (R - 1):.3f}]"
        )
    return failures


def draw_all(case: Case, base_seed: int = BASE_SEED) -> tuple[np.ndarray, np.ndarray]:
    draws = np.array([case.draw(base_seed + s) for s in range(NUM_SEEDS)], dtype=np.float64)
    return draws[:, 0], draws[:, 1]


@pytest.mark.parametrize("name", list(CASES))
def test_stderr_is_calibrated(name):
    """Coverage, mean and spread of 400 seeds in bands of false-failure rate 2e-5 each (6e-5 here).

    The planted-bug asserts fail only if a 5% bias or a sqrt(2) stderr error goes unnoticed: for
    these sizes with probability < 1e-7 (the bias moves t by >= 25; a true variance ratio of 2 or
    1/2 lands inside the spread band with chi-square probability 4e-8 or 1e-8).
    """
    case = CASES[name]
    values, stderrs = draw_all(case)
    failures = calibration_failures(values, stderrs, case.exact, case.num_probes)
    assert not failures, failures
    for factor in (1.05, 0.95):
        planted = calibration_failures(values * factor, stderrs, case.exact, case.num_probes)
        assert "mean" in planted, f"a bias x{factor} went unnoticed"
    for factor in (SQRT2, 1 / SQRT2):
        planted = calibration_failures(values, stderrs * factor, case.exact, case.num_probes)
        assert "spread" in planted, f"a stderr x{factor:.3f} went unnoticed"
