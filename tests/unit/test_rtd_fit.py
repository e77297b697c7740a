"""The calibration fits against synthetic data made here, independently of the simulator: the
tracer response from scipy.stats.gamma (and, for a stage in series, a direct numerical
convolution with scipy.integrate.quad), the feed factor from its formula, noise from numpy."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from darkfab.factory.feed_factor_fit import fit_feed_factor
from darkfab.factory.rtd import TanksInSeries
from darkfab.factory.rtd_fit import fit_tanks_in_series, tanks_cdf


def gamma_F(t, tau, n):
    return stats.gamma.cdf(np.asarray(t, float), a=n, scale=tau / n)


def test_tanks_cdf_is_the_gamma_law():
    t = np.linspace(-10, 600, 50)
    assert np.allclose(tanks_cdf(t, 120.0, 2.5), gamma_F(t, 120.0, 2.5), atol=1e-12)


def square_wave(period, n_steps, size, t0):
    """Input steps: +size at t0, −size half a period later, and so on."""
    th = t0 + 0.5 * period * np.arange(n_steps)
    dx = size * np.where(np.arange(n_steps) % 2 == 0, 1.0, -1.0)
    return th, dx


@pytest.mark.parametrize("tau, n", [(140.0, 5.0), (70.0, 1.6)])
def test_fit_recovers_a_gamma_rtd_from_noisy_steps(tau, n):
    rng = np.random.default_rng(7)
    st, dx = square_wave(1800.0, 8, 0.15, 600.0)
    th = np.arange(0.0, 8 * 900.0 + 1500.0, 15.0)
    y = 1.0 + sum(d * gamma_F(th - s, tau, n) for s, d in zip(st, dx))
    y = 1.02 * y + rng.normal(0.0, 0.01, th.size)  # a 2 % gain error and 1 % noise
    fit = fit_tanks_in_series(th, y, st, dx, tau0_s=100.0, n0=3.0)
    assert fit.converged
    # within 3 standard errors, and the standard errors small enough to mean something
    assert abs(fit.tau_s - tau) < 3 * fit.se["tau_s"] and fit.se["tau_s"] < 0.03 * tau
    assert abs(fit.n - n) < 3 * fit.se["n"] and fit.se["n"] < 0.08 * n
    assert abs(fit.gain - 1.02) < 3 * fit.se["gain"]
    assert fit.ci95["tau_s"][0] < tau < fit.ci95["tau_s"][1]
    assert 0.009 < fit.rmse < 0.011 and fit.r2 > 0.9


def test_standard_errors_match_the_spread_over_replications():
    """The Jacobian's standard error of τ against the spread of τ over 40 noise draws."""
    tau, n = 90.0, 3.0
    st, dx = np.array([300.0, 330.0]), np.array([0.3, -0.3])  # a 30 s pulse
    th = np.arange(0.0, 1500.0, 10.0)
    clean = 1.0 + sum(d * gamma_F(th - s, tau, n) for s, d in zip(st, dx))
    rng = np.random.default_rng(11)
    taus, ses = [], []
    for _ in range(40):
        fit = fit_tanks_in_series(th, clean + rng.normal(0, 0.005, th.size), st, dx,
                                  tau0_s=60.0, n0=2.0, fit_gain=False)
        taus.append(fit.tau_s)
        ses.append(fit.se["tau_s"])
    sd = float(np.std(taus, ddof=1))
    # the sd of a sample of 40 is within ±35 % of σ with ~97 % probability (χ²₃₉)
    assert 0.65 < np.mean(ses) / sd < 1.5
    assert abs(np.mean(taus) - tau) < 3 * sd / math.sqrt(40) + 0.5


def test_fit_with_a_known_stage_in_series():
    """Gamma(τ, n) in series with a known 3-tank stage of mean 15 s: synthetic response by
    direct quadrature (trapezoid, 0.05 s steps) of F_gamma(t − s)·E_known(s)."""
    tau, n = 110.0, 4.0
    s = np.linspace(0.0, 1500.0, 30001)
    e = stats.gamma.pdf(s, a=3.0, scale=5.0)
    lags = np.linspace(0.0, 1500.0, 601)
    table = np.array([integrate.trapezoid(gamma_F(x - s[s <= x], tau, n) * e[s <= x], s[s <= x])
                      if x > 0 else 0.0 for x in lags])
    st, dx = square_wave(2400.0, 6, 0.2, 400.0)
    th = np.arange(0.0, 3 * 2400.0 + 1200.0, 12.0)
    clean = np.full(th.size, 0.98)
    for a, d in zip(st, dx):
        clean += d * np.interp(th - a, lags, table, left=0.0, right=1.0)
    known = TanksInSeries(15.0, 3.0)
    exact = fit_tanks_in_series(th, clean, st, dx, tau0_s=80.0, n0=2.0, fixed=known)
    assert abs(exact.tau_s / tau - 1) < 1e-3 and abs(exact.n / n - 1) < 1e-3  # no bias
    y = clean + np.random.default_rng(3).normal(0, 0.01, th.size)
    fit = fit_tanks_in_series(th, y, st, dx, tau0_s=80.0, n0=2.0, fixed=known)
    assert abs(fit.tau_s - tau) < 3 * fit.se["tau_s"] and fit.se["tau_s"] < 0.02 * tau
    assert abs(fit.n - n) < 3 * fit.se["n"] and fit.se["n"] < 0.1 * n
    assert abs(fit.offset - 0.98) < 0.005
    # fitting the whole line as one gamma instead finds its mean (τ + 15 s), not τ
    whole = fit_tanks_in_series(th, y, st, dx, tau0_s=80.0, n0=2.0)
    assert abs(whole.tau_s - (tau + 15.0)) < 0.03 * (tau + 15.0)


def test_fit_refuses_an_input_without_a_change():
    with pytest.raises(ValueError, match="no change"):
        fit_tanks_in_series(np.arange(50.0), np.ones(50), [10.0], [0.0], tau0_s=10.0)


def test_feed_factor_fit_recovers_the_curve():
    ff_max, ff_min, beta = 0.0012, 0.0007, 0.6
    rng = np.random.default_rng(5)
    # a hopper emptying from 6 to 1.5 kg and refilled, 20 times, with 2 % AR(1) feed noise
    m = np.tile(np.linspace(6.0, 1.5, 300), 20)
    eps = np.zeros(m.size)
    for i in range(1, m.size):
        eps[i] = 0.5 * eps[i - 1] + 0.02 * math.sqrt(1 - 0.25) * rng.standard_normal()
    ff = (ff_max - (ff_max - ff_min) * np.exp(-beta * m)) * (1 + eps)
    fit = fit_feed_factor(m, ff)
    assert fit.converged and fit.n_obs == m.size
    for name, true in [("ff_max_kg_rev", ff_max), ("ff_min_kg_rev", ff_min),
                       ("beta_per_kg", beta)]:
        est = getattr(fit, name)
        assert abs(est - true) < 3.5 * fit.se[name], name
    assert abs(fit.ff_max_kg_rev / ff_max - 1) < 0.01
    assert abs(fit.beta_per_kg / beta - 1) < 0.1
    assert 0.3 < fit.residual_lag1 < 0.7  # the AR(1) correlation of 0.5 is seen
    assert fit.mass_range_kg == (1.5, 6.0)


def test_feed_factor_fit_refuses_a_constant_mass():
    with pytest.raises(ValueError, match="never changed"):
        fit_feed_factor(np.full(20, 3.0), np.full(20, 1e-3))


@pytest.mark.parametrize("boundary", ["open", "closed"])
def test_axial_dispersion_override_matches_the_fitted_moments(boundary):
    """A fitted gamma (mean, n) for a dispersion blender: the Pe and τ written have the
    fitted mean and variance (moments of darkfab.factory.rtd.AxialDispersion)."""
    from darkfab.factory.rtd import AxialDispersion
    from darkfab.scenarios.calibrate import peclet_for

    mean, n = 120.0, 6.0
    pe = peclet_for(1.0 / n, boundary)
    tau = mean / (1 + 2 / pe) if boundary == "open" else mean
    ad = AxialDispersion(tau, pe, boundary)
    assert ad.mean_s == pytest.approx(mean, rel=1e-9)
    assert ad.variance_s2 == pytest.approx(mean**2 / n, rel=1e-6)


@pytest.mark.parametrize("boundary, n", [("closed", 0.9), ("open", 0.45)])
def test_a_fit_wider_than_any_dispersion_blender_is_refused_not_raised(boundary, n):
    """n ≤ 1 (closed) or ≤ 0.5 (open): no Péclet number gives that spread; the calibration
    reports it (CalibrationError, one line on the command line) instead of a root-finder error."""
    from darkfab.scenarios.calibrate import CalibrationError, peclet_for

    with pytest.raises(CalibrationError, match="wider than any"):
        peclet_for(1.0 / n, boundary)
    peclet_for(1.0 / (2 * n), boundary)  # within range: a Pe exists
