"""The CDF recalibration and the gated predictive distribution, on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import laplace

from gapforge.errors import ModelError
from gapforge.models.calibration import CdfRecalibration, central_coverage
from gapforge.models.metal_gate import GapDistribution, combine
from gapforge.window import GapWindow


def _laplace_rows(n: int, seed: int) -> tuple[GapDistribution, np.ndarray]:
    """Non-metals whose errors are Laplace with std 1 while the model says Normal(mu, 0.5)."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(3.0, 6.0, n)  # far from 0 eV: no atom, a pure shape problem
    y = mu + laplace.rvs(scale=1 / np.sqrt(2), size=n, random_state=rng)
    return GapDistribution(np.zeros(n), mu, np.full(n, 0.5)), y


def test_identity_map_changes_nothing_and_knots_are_checked() -> None:
    r = CdfRecalibration.identity()
    u = np.linspace(0, 1, 11)
    assert r(u) == pytest.approx(u) and r.inverse(u) == pytest.approx(u)
    with pytest.raises(ModelError, match="strictly increasing"):
        CdfRecalibration(np.array([0.0, 0.5, 0.5, 1.0]), np.array([0.0, 0.2, 0.3, 1.0]))
    with pytest.raises(ModelError, match=r"\(0, 0\) to \(1, 1\)"):
        CdfRecalibration(np.array([0.0, 0.9]), np.array([0.0, 1.0]))
    with pytest.raises(ModelError, match="at least 10"):
        CdfRecalibration.fit([0.1, 0.2])


def test_a_calibrated_model_gets_a_map_close_to_the_identity() -> None:
    rng = np.random.default_rng(0)
    mu = rng.uniform(2, 5, 20_000)
    y = rng.normal(mu, 0.7)
    d = GapDistribution(np.zeros_like(mu), mu, np.full_like(mu, 0.7))
    r = CdfRecalibration.fit(d.pit(y))
    grid = np.linspace(0, 1, 21)
    assert np.abs(r(grid) - grid).max() < 0.02


def test_the_map_recovers_the_known_laplace_levels() -> None:
    """Model N(mu, 0.5), truth Laplace(mu, std 1): R(u) = F_Laplace(0.5 * Phi^-1(u)), known in closed form."""
    d, y = _laplace_rows(20_000, seed=1)
    r = CdfRecalibration.fit(d.pit(y))
    u = np.array([0.05, 0.16, 0.3, 0.5, 0.7, 0.84, 0.95])
    from scipy.special import ndtri

    truth = laplace.cdf(0.5 * ndtri(u), scale=1 / np.sqrt(2))
    assert r(u) == pytest.approx(truth, abs=0.015)


def test_recalibrated_intervals_cover_at_the_nominal_rates_on_fresh_rows() -> None:
    d_val, y_val = _laplace_rows(10_000, seed=2)
    d_test, y_test = _laplace_rows(10_000, seed=3)
    raw_1 = central_coverage(*d_test.interval(1.0), y_test)
    # N(., 0.5) is too narrow for Laplace errors of std 1: its ±1σ holds 1 - exp(-0.5 sqrt 2)
    assert raw_1 == pytest.approx(1 - np.exp(-0.5 * np.sqrt(2)), abs=0.02)
    cal = d_test.with_recalibration(CdfRecalibration.fit(d_val.pit(y_val)))
    assert central_coverage(*cal.interval(1.0), y_test) == pytest.approx(ndtr(1) - ndtr(-1), abs=0.02)
    assert central_coverage(*cal.interval(2.0), y_test) == pytest.approx(ndtr(2) - ndtr(-2), abs=0.01)
    # the median stays where the symmetric truth has it
    assert np.median(cal.median() - d_test.mu) == pytest.approx(0.0, abs=0.02)
    # window probabilities are frequencies: P(|gap - mu| <= 0.5) of a Laplace of std 1 is 1 - exp(-0.5 sqrt 2)
    p = cal.cdf(d_test.mu + 0.5) - cal.cdf(d_test.mu - 0.5)
    assert np.mean(p) == pytest.approx(1 - np.exp(-0.5 * np.sqrt(2)), abs=0.02)
    assert np.mean(np.abs(y_test - d_test.mu) <= 0.5) == pytest.approx(np.mean(p), abs=0.02)
    one = cal.window_probability(GapWindow(float(d_test.mu[0]) - 0.5, float(d_test.mu[0]) + 0.5))[0]
    assert one == pytest.approx(p[0])


def test_the_atom_at_zero_and_the_randomised_pit() -> None:
    # P(metal) = 0.3, non-metal N(2, 0.5): F(0) = 0.3 + 0.7 * Phi(-4)
    d = GapDistribution(np.array([0.3]), np.array([2.0]), np.array([0.5]))
    assert d.raw_cdf(-0.1)[0] == 0.0
    assert d.raw_cdf(0.0)[0] == pytest.approx(0.3 + 0.7 * ndtr(-4.0))
    assert d.ppf(0.25)[0] == 0.0 and d.ppf(0.65)[0] == pytest.approx(2.0)
    # a metal's PIT is spread uniformly over [0, F(0)]
    many = GapDistribution(np.full(50_000, 0.3), np.full(50_000, 2.0), np.full(50_000, 0.5))
    u = many.pit(np.zeros(50_000), seed=4)
    assert u.max() <= many.raw_cdf(0.0)[0] + 1e-12 and u.mean() == pytest.approx(0.15, abs=0.005)
    # data drawn from this very mixture give uniform PITs
    rng = np.random.default_rng(5)
    y = np.where(rng.uniform(size=50_000) < 0.3, 0.0, np.clip(rng.normal(2.0, 0.5, 50_000), 0, None))
    hist, _ = np.histogram(many.pit(y, seed=6), bins=10, range=(0, 1))
    assert hist / 50_000 == pytest.approx(np.full(10, 0.1), abs=0.01)
    # the window [0, 0.1] holds the atom
    assert d.window_probability(GapWindow(0.0, 0.1))[0] == pytest.approx(0.3 + 0.7 * ndtr(-3.8))


def test_uncalibrated_distribution_agrees_with_the_gate() -> None:
    p, mu, s = np.array([0.2, 0.7, 0.0]), np.array([2.0, 2.0, 1.5]), np.array([0.5, 0.5, 0.3])
    d, g = GapDistribution(p, mu, s), combine(p, mu, s)
    assert d.median() == pytest.approx(g.point) and d.reported_std() == pytest.approx(g.std)
    r = CdfRecalibration.fit(np.random.default_rng(7).uniform(size=500) ** 2)  # not the identity
    assert d.with_recalibration(r).reported_std() == pytest.approx(d.with_recalibration(r).sigma_equivalent())
    assert CdfRecalibration.from_dict(r.to_dict()).freqs == pytest.approx(r.freqs)
