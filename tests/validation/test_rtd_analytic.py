"""RTD models against their analytic moments and responses (Levenspiel, *Chemical Reaction
Engineering*, 3rd ed., Wiley 1999, ch. 13–14).

Moments are computed here by numerical integration of each model's pdf (quad on analytic pdfs,
trapezoid on the fine grid for tabulated ones), never read from the model's own mean/variance,
so the tests fail if a pdf is wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from darkfab.factory.rtd import RTD, AxialDispersion, SeriesRTD, TanksInSeries
from darkfab.factory.rtd_predictor import RTDPredictor


def moments_quad(rtd: RTD) -> tuple[float, float, float]:
    hi = rtd.tail_s * 1.5
    pts = [rtd.mean_s * x for x in (0.01, 0.1, 0.5, 1, 2, 4)]
    pts = [p for p in pts if p < hi]
    kw = dict(points=pts, limit=500, epsabs=1e-13, epsrel=1e-11)
    m0 = integrate.quad(lambda t: float(rtd.pdf(t)), 0, hi, **kw)[0]
    m1 = integrate.quad(lambda t: t * float(rtd.pdf(t)), 0, hi, **kw)[0]
    m2 = integrate.quad(lambda t: (t - m1) ** 2 * float(rtd.pdf(t)), 0, hi, **kw)[0]
    return m0, m1, m2


def moments_grid(rtd: RTD, n: int = 400_001) -> tuple[float, float, float]:
    t = np.linspace(0.0, rtd.tail_s * 1.5, n)
    e = rtd.pdf(t)
    m0 = np.trapezoid(e, t)
    m1 = np.trapezoid(t * e, t)
    return m0, m1, np.trapezoid((t - m1) ** 2 * e, t)


@pytest.mark.parametrize("n", [0.6, 1.0, 2.5, 3.0, 7.3, 40.0])
def test_rtd_tanks_in_series_moments(n):
    tau = 120.0
    r = TanksInSeries(tau, n)
    m0, m1, var = moments_quad(r)
    assert m0 == pytest.approx(1.0, abs=1e-7)
    assert m1 == pytest.approx(tau, rel=1e-7)
    assert var == pytest.approx(tau**2 / n, rel=1e-6)
    assert (r.mean_s, r.variance_s2) == pytest.approx((tau, tau**2 / n))
    # the cumulative is the integral of the pdf
    for t in (0.3 * tau, tau, 2.2 * tau):
        assert float(r.cdf(t)) == pytest.approx(
            integrate.quad(lambda x: float(r.pdf(x)), 0, t, limit=200)[0], abs=1e-9)
    assert float(r.sf(r.tail_s)) == pytest.approx(r.tail_tol, rel=1e-6)


@pytest.mark.parametrize("pe", [1.5, 10.0, 100.0])
def test_rtd_axial_dispersion_open_moments(pe):
    tau = 80.0
    r = AxialDispersion(tau, pe, "open")
    m0, m1, var = moments_quad(r)
    assert m0 == pytest.approx(1.0, abs=1e-8)
    assert m1 == pytest.approx(tau * (1 + 2 / pe), rel=1e-8)
    assert var == pytest.approx(tau**2 * (2 / pe + 8 / pe**2), rel=1e-7)
    t = np.linspace(1e-3, 3 * tau, 50_001)
    cum = integrate.cumulative_trapezoid(r.pdf(t), t, initial=0) + float(r.cdf(t[0]))
    assert np.max(np.abs(r.cdf(t) - cum)) < 1e-7


@pytest.mark.parametrize("pe", [0.3, 2.0, 12.0, 150.0, 2000.0])
def test_rtd_axial_dispersion_closed_moments(pe):
    tau = 60.0
    r = AxialDispersion(tau, pe, "closed")
    m0, m1, var = moments_grid(r)
    sig2 = 2 / pe - 2 / pe**2 * (1 - math.exp(-pe))
    assert m0 == pytest.approx(1.0, abs=1e-7)
    assert m1 == pytest.approx(tau, rel=1e-7)
    assert var == pytest.approx(tau**2 * sig2, rel=2e-6)
    # the tabulated F is the integral of the tabulated E
    t = np.linspace(0, r.tail_s, 200_001)
    cum = integrate.cumulative_trapezoid(r.pdf(t), t, initial=0)
    assert np.max(np.abs(r.cdf(t) - cum)) < 1e-6


def test_rtd_closed_tends_to_open_and_cstr():
    """Large Pe: closed and open nearly agree; tiny Pe: closed → one stirred tank."""
    t = np.linspace(0, 200, 2001)
    big_c, big_o = AxialDispersion(100, 3000, "closed"), AxialDispersion(100, 3000, "open")
    assert np.max(np.abs(big_c.cdf(t) - big_o.cdf(t))) < 0.02
    small = AxialDispersion(100, 0.05, "closed")
    assert np.max(np.abs(small.cdf(t) - TanksInSeries(100, 1).cdf(t))) < 0.03


def test_rtd_series_moments_add_and_matches_gamma():
    parts = [TanksInSeries(40, 1.5), AxialDispersion(200, 20, "closed"), TanksInSeries(10, 3),
             AxialDispersion(30, 50, "open")]
    s = SeriesRTD(parts)
    m0, m1, var = moments_grid(s)
    assert s.mean_s == pytest.approx(sum(p.mean_s for p in parts), rel=1e-15)
    assert s.variance_s2 == pytest.approx(sum(p.variance_s2 for p in parts), rel=1e-15)
    assert m0 == pytest.approx(1.0, abs=1e-6)
    assert m1 == pytest.approx(s.mean_s, rel=1e-6)
    assert var == pytest.approx(s.variance_s2, rel=1e-5)
    # same scale τ/n: gamma(2) * gamma(3) = gamma(5) exactly
    s2 = SeriesRTD([TanksInSeries(10, 2), TanksInSeries(15, 3)])
    exact = TanksInSeries(25, 5)
    t = np.linspace(0, 200, 4001)
    assert np.max(np.abs(s2.cdf(t) - exact.cdf(t))) < 1e-6
    assert np.max(np.abs(s2.pdf(t) - exact.pdf(t))) < 1e-5 * float(exact.pdf(20.0))
    w = np.array([0.01, 0.1, 1.0])
    assert s.gain(w) == pytest.approx(np.prod([p.gain(w) for p in parts], axis=0))


def test_rtd_one_tank_step_response_at_tau():
    tau = 75.0
    r = TanksInSeries(tau, 1)
    assert float(r.cdf(tau)) == pytest.approx(1 - 1 / math.e, abs=1e-14)
    p = RTDPredictor(r)
    p.push(0.0, [1.0])
    assert float(p.output(tau)[0]) == pytest.approx(1 - 1 / math.e, abs=1e-14)


@pytest.mark.parametrize("n", [1.0, 3.0, 6.5])
def test_rtd_sinusoid_attenuation_through_predictor(n):
    """A sinusoid pushed as fine piecewise-constant segments through n tanks comes out
    attenuated by (1 + (ωτ/n)²)^(−n/2). Holding midpoint samples for h scales the input's
    fundamental by exactly sinc(ωh/2) = 1 − (ωh)²/24 + …: the measured ratio must equal
    theory × sinc to 2e-6 (fit and tail truncation), and theory to (ωh)²/24 + 2e-6."""
    tau, period, amp = 40.0, 90.0, 0.2
    w = 2 * math.pi / period
    h = period / 180
    r = TanksInSeries(tau, n)
    p = RTDPredictor(r, retain_s=6 * period)
    t_end = r.tail_s + 6 * period
    starts = np.arange(0.0, t_end, h)
    for s in starts:
        p.push(s, [1.0 + amp * math.sin(w * (s + h / 2))])
    ts = np.linspace(t_end - 5 * period, t_end, 2001)[:-1]
    y = p.output(ts)[:, 0]
    a = np.column_stack([np.sin(w * ts), np.cos(w * ts), np.ones_like(ts)])
    c = np.linalg.lstsq(a, y, rcond=None)[0]
    measured = math.hypot(c[0], c[1]) / amp
    theory = (1 + (w * tau / n) ** 2) ** (-n / 2)
    assert float(r.gain(w)) == pytest.approx(theory, rel=1e-14)
    x = w * h / 2
    assert measured == pytest.approx(theory * math.sin(x) / x, rel=2e-6)
    assert abs(measured / theory - 1) < (w * h) ** 2 / 24 + 2e-6
    assert p.n_segments < (r.tail_s + 6 * period) / h + 3  # old segments were dropped
