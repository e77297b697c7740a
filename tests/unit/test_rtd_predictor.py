"""RTD predictor: mass conservation, lot traceability, pruning and threshold crossings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from darkfab.factory.rtd import AxialDispersion, SeriesRTD, TanksInSeries
from darkfab.factory.rtd_predictor import RTDPredictor, first_exit_time

RTDS = [TanksInSeries(50, 1), TanksInSeries(50, 2.7), AxialDispersion(50, 8, "closed"),
        AxialDispersion(50, 20, "open"), SeriesRTD([TanksInSeries(20, 2), TanksInSeries(30, 1)])]


@pytest.mark.parametrize("rtd", RTDS, ids=repr)
def test_rtd_predictor_conserves_mass(rtd):
    """input = output + hold-up; at steady flow the hold-up is flow × mean (Little's law); after
    the input stops and the tail has passed, output = input to 1e-9 relative."""
    p = RTDPredictor(rtd)
    p.push(0.0, {"A": 2.0})
    p.push(300.0, {"A": 1.0, "B": 0.5})
    t = 300.0 + 1.2 * rtd.tail_s
    out, inp = p.cumulative_output(t), p.cumulative_input(t)
    assert inp == pytest.approx([600.0 + 1.2 * rtd.tail_s, 0.5 * 1.2 * rtd.tail_s])
    assert p.holdup(t) == pytest.approx([rtd.mean_s * 1.0, rtd.mean_s * 0.5], rel=1e-6)
    # output mass agrees with the integral of the output rate
    a, b = 10.0, 450.0
    ref = integrate.quad(lambda x: float(p.output(x)[0]), a, b, limit=400,
                         points=[300.0], epsabs=1e-10)[0]
    assert float(p.output_mass(a, b)[0]) == pytest.approx(ref, rel=1e-6)
    p.push(t, {})
    t2 = t + 2 * rtd.tail_s
    p.prune(t2)
    assert p.n_segments == 1
    assert p.cumulative_output(t2) == pytest.approx(p.cumulative_input(t2), rel=1e-9)


def test_rtd_predictor_lot_fractions_one_tank():
    tau = 60.0
    r = TanksInSeries(tau, 1)
    p = RTDPredictor(r)
    p.push(0.0, {"lot1": 1.0})
    p.push(100.0, {"lot2": 1.0})
    a, b = 120.0, 200.0
    f1 = integrate.quad(lambda t: float(r.cdf(t) - r.cdf(t - 100)), a, b)[0]
    tot = integrate.quad(lambda t: float(r.cdf(t)), a, b)[0]
    fr = p.lot_fractions(a, b)
    assert fr["lot1"] == pytest.approx(f1 / tot, rel=1e-10)
    assert fr["lot1"] + fr["lot2"] == pytest.approx(1.0)


def test_rtd_predictor_prunes_and_guards_history():
    r = TanksInSeries(10, 2)
    p = RTDPredictor(r)
    for k in range(2000):
        p.push(float(k), {"x": 1.0 + (k % 3)})
    assert p.n_segments <= r.tail_s + 2
    with pytest.raises(ValueError):
        p.output_mass(0.0, 10.0)
    with pytest.raises(ValueError):
        p.push(5.0, {"x": 1.0})


def test_rtd_predictor_first_exit_matches_analytic_one_tank():
    """Step 1 → 1.2 at t = 1000 through one tank crosses 1.05 at 1000 − τ·ln(1 − 0.05/0.2)."""
    tau = 30.0
    p = RTDPredictor(TanksInSeries(tau, 1))
    p.push(0.0, [1.0])
    assert p.first_exit(0.0, 0.95, 1.05) == 0.0  # start-up: nothing has come out yet
    assert p.first_exit(30 * tau, 0.95, 1.05) is None
    p.push(1000.0, [1.2])
    t = p.first_exit(1000.0, 0.95, 1.05)
    assert t == pytest.approx(1000 - tau * math.log(1 - 0.25), abs=1e-6 * tau)
    # ratio of channels (API mass fraction)
    q = RTDPredictor(TanksInSeries(tau, 1))
    q.push(0.0, {"api": 0.1, "exc": 0.9})
    q.push(50.0, {"api": 0.13, "exc": 0.9})
    frac = lambda y: y[:, 0] / y.sum(axis=1)  # noqa: E731
    t = q.first_exit(50.0, 0.095, 0.105, scalar=frac)
    assert t is not None and 50.0 < t < q.settle_time()
    assert float(frac(q.output(np.array([t])))[0]) == pytest.approx(0.105, abs=1e-9)


def test_first_exit_time_none_and_immediate():
    g = lambda t: np.sin(t)  # noqa: E731
    assert first_exit_time(g, 0.0, 1.0, -2, 2, 0.1) is None
    assert first_exit_time(g, 2.0, 3.0, -2, 0.5, 0.1) == 2.0
    assert first_exit_time(g, 0.0, 3.0, -2, 0.5, 0.1, xtol_s=1e-12) == pytest.approx(
        math.asin(0.5), abs=1e-10)
