"""Diversion: RTD windows, predicted out-of-spec windows, gate accounting, and the property that
no accepted output has a true concentration outside spec (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from darkfab.factory.diversion import (DiversionGate, merge_intervals, out_of_spec_intervals,
                                       rtd_window, scan_grid)
from darkfab.factory.rtd import TanksInSeries
from darkfab.factory.rtd_predictor import RTDPredictor

TAU, N = 60.0, 2.0
RTD = TanksInSeries(TAU, N)
LOW, HIGH, L = 0.95, 1.05, 0.05
T_END = 2500.0


def test_diversion_rtd_window_one_tank():
    r = TanksInSeries(40.0, 1)
    a, b = rtd_window(r, 100.0, 130.0, alpha=0.01)
    assert a == pytest.approx(100 - 40 * math.log(0.99))
    assert b == pytest.approx(130 - 40 * math.log(0.01))


def test_diversion_gate_routes_mass_by_cause():
    g = DiversionGate()
    g.add_window(10, 20, "pat")
    g.add_window(15, 30, "refill")
    g.route(0, 40, lambda a, b: 2.0 * (b - a))
    assert g.accepted_kg == pytest.approx(40.0)
    assert g.diverted_kg == {"pat": pytest.approx(20.0), "refill": pytest.approx(20.0)}
    assert g.accepted_intervals == [(0, 10), (30, 40)]
    assert g.next_switch_s(12) == 15 and g.next_switch_s(30) == math.inf
    assert merge_intervals([(3, 4), (0, 1), (0.5, 2)]) == [(0, 2), (3, 4)]


def true_output(t: np.ndarray, dist: list[tuple[float, float, float]]) -> np.ndarray:
    """Exact output concentration (scipy.stats.gamma, independent of the predictor)."""
    cdf = stats.gamma(N, scale=TAU / N).cdf
    y = np.ones_like(t)
    for s, d, m in dist:
        y += m * (cdf(t - s) - cdf(t - s - d))
    return y


def input_level(t: float, dist) -> float:
    return 1.0 + sum(m for s, d, m in dist if s <= t < s + d)


disturbances = st.lists(st.tuples(st.floats(300.0, 1500.0), st.floats(1.0, 300.0),
                                  st.floats(-0.3, 0.3)), min_size=1, max_size=4)


def accepted_in_spec(gate: DiversionGate, dist) -> None:
    for a, b in gate.accepted_intervals:
        t = np.append(np.arange(a, b, RTD.std_s / 100), b)
        y = true_output(t, dist)
        assert np.all((y >= LOW - 1e-12) & (y <= HIGH + 1e-12)), (a, b, y.min(), y.max())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disturbances)
def test_diversion_property_predicted_rule(dist):
    """Divert where the predicted c_out leaves [low + m, high − m] (m = 0.002 covers the
    sampling tolerance) → every accepted interval is within spec."""
    p = RTDPredictor(RTD, retain_s=T_END)
    cuts = sorted({0.0, *(s for s, d, m in dist), *(s + d for s, d, m in dist)})
    for c in cuts:
        p.push(c, [input_level(c, dist)])
    m = 0.002
    g = DiversionGate()
    fn = lambda ts: p.output(ts)[:, 0]  # noqa: E731
    found = out_of_spec_intervals(fn, 200.0, T_END, LOW + m, HIGH - m, step_s=RTD.std_s / 20)
    # samples evaluated beforehand (as the CDC line shares them with the PAT): same intervals
    vs = fn(scan_grid(200.0, T_END, RTD.std_s / 20))
    assert out_of_spec_intervals(fn, 200.0, T_END, LOW + m, HIGH - m, step_s=RTD.std_s / 20,
                                 values=vs) == found
    for a, b in found:
        g.add_window(a, b, "predicted")
    g.route(200.0, T_END, lambda a, b: float(p.output_mass(a, b)[0]))
    accepted_in_spec(g, dist)
    total = float(p.output_mass(200.0, T_END)[0])
    assert g.accepted_kg + g.total_diverted_kg == pytest.approx(total, rel=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disturbances)
def test_diversion_property_rtd_window_rule(dist):
    """Input outside ±L/2 on [t0, t1] → divert [t0 + t_α, t1 + t_(1−α)], α = 1e-3: outside
    the windows at most α of each out-of-spec input interval (≤ 8, |Δ| ≤ 1.2) reaches the
    output, so |c_out − 1| ≤ L/2 + 8·α·1.2 < L."""
    cuts = sorted({0.0, T_END, *(s for s, d, m in dist), *(s + d for s, d, m in dist)})
    g = DiversionGate()
    for a, b in zip(cuts[:-1], cuts[1:]):
        if abs(input_level(a, dist) - 1.0) > L / 2:
            g.add_window(*rtd_window(RTD, a, b, alpha=1e-3), "input")
    g.route(0.0, T_END + RTD.tail_s, lambda a, b: b - a)
    accepted_in_spec(g, dist)


@pytest.mark.parametrize("centre", [50.3, 0.4, 99.7])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_out_of_spec_finds_excursions_between_samples(centre, sign):
    """A Gaussian bump 0.2 % beyond the limit and far narrower than the sampling step (no
    sample outside spec), inside the grid or in its first or last step: found, with both
    crossings at centre ± w·√ln(0.0502/0.05) to xtol."""
    def g(t: np.ndarray) -> np.ndarray:
        return 1.0 + sign * 0.0502 * np.exp(-((t - centre) / 0.8) ** 2)
    ts = scan_grid(0.0, 100.0, 2.0)
    assert not ((g(ts) < 0.95) | (g(ts) > 1.05)).any()
    (iv,) = out_of_spec_intervals(g, 0.0, 100.0, 0.95, 1.05, 2.0, xtol_s=1e-9)
    half = 0.8 * math.sqrt(math.log(0.0502 / 0.05))
    assert iv == pytest.approx((centre - half, centre + half), abs=1e-7)
    # a bump that stays inside spec books nothing
    assert out_of_spec_intervals(lambda t: 1.0 + sign * 0.0498 * np.exp(
        -((t - centre) / 0.8) ** 2), 0.0, 100.0, 0.95, 1.05, 2.0) == []


def test_out_of_spec_bisects_where_the_scalar_turns_nan():
    """g is NaN (e.g. the flow below its threshold) on [31.234, 47.777]: the interval is found
    to xtol whatever the sampling grid, not to the sampling step."""
    def g(t: np.ndarray) -> np.ndarray:
        return np.where((t >= 31.234) & (t <= 47.777), np.nan, 1.0)
    for step in (2.0, 5.8, 7.3):
        (iv,) = out_of_spec_intervals(g, 0.0, 100.0, 0.95, 1.05, step, xtol_s=1e-6)
        assert iv == pytest.approx((31.234, 47.777), abs=2e-6)


def test_out_of_spec_samples_clear_of_the_limits_call_nothing():
    """Samples all well inside spec: [] without refining (g is not called); one NaN, inf or
    out-of-spec sample among them, or a lower limit of −inf with a −inf sample, still books
    its interval."""
    ts = scan_grid(0.0, 100.0, 2.0)
    vs = 1.0 + 0.01 * np.sin(ts / 10.0)

    def no_g(t: np.ndarray) -> np.ndarray:
        raise AssertionError("g called")
    assert out_of_spec_intervals(no_g, 0.0, 100.0, 0.95, 1.05, 2.0, values=vs, grid=ts) == []
    assert out_of_spec_intervals(no_g, 0.0, 1.0, 0.95, 1.05, 2.0,
                                 values=np.array([1.0, 1.01])) == []
    for bad, low in [(np.nan, 0.95), (np.inf, 0.95), (1.2, 0.95), (-np.inf, -np.inf)]:
        v = vs.copy()
        v[10] = bad
        with np.errstate(invalid="ignore"):  # −inf − (−inf) at the crossing
            (iv,) = out_of_spec_intervals(lambda t: np.interp(t, ts, v), 0.0, 100.0, low,
                                          1.05, 2.0, values=v, grid=ts)
        assert iv[0] <= ts[10] <= iv[1]
    with np.errstate(invalid="ignore"):  # two samples only: no second difference to fall on
        (iv,) = out_of_spec_intervals(lambda t: np.where(t < 0.5, -np.inf, 1.0), 0.0, 1.0,
                                      -np.inf, 1.05, 2.0, xtol_s=1e-6,
                                      values=np.array([-np.inf, 1.0]))
    assert iv[0] == 0.0 and iv[1] == pytest.approx(0.5, abs=1e-6)
