"""Flow time (RTD in throughput): the clock map and the predictor on it, against the
clock-time RTD shifted by the pauses (one tank: F(t) = 1 − e^(−t/τ), Levenspiel 1999)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkfab.factory.flow_clock import FlowClock, FlowLaw, FlowTimePredictor
from darkfab.factory.rtd import TanksInSeries
from darkfab.factory.rtd_predictor import RTDPredictor


def test_clock_map():
    c = FlowClock(0.0, 1.0)
    assert c.is_identity and c.theta(7.5) == 7.5
    c.set_rate(10.0, 0.0)  # paused from 10 s ...
    c.set_rate(40.0, 0.5)  # ... to 40 s, then at half rate
    assert c.theta(25.0) == 10.0 and c.theta(50.0) == pytest.approx(15.0)
    assert np.allclose(c.thetas([5.0, 25.0, 50.0]), [5.0, 10.0, 15.0])
    assert np.allclose(c.rates([5.0, 10.0, 39.0, 40.0]), [1.0, 0.0, 0.0, 0.5])
    assert c.time_of(10.0) == 10.0  # the earliest time at that flow time
    assert c.time_of(15.0) == pytest.approx(50.0)
    c.prune(12.0)  # forget what maps flow times below 12
    assert c.theta(50.0) == pytest.approx(15.0)
    with pytest.raises(ValueError):
        c.set_rate(30.0, 1.0)  # back in time


def test_a_pause_holds_the_material_in_place():
    """Constant feed 1 kg/s into one tank (τ = 100 s), paused from 200 s to 500 s: no output
    while paused, the hold-up stays, and afterwards the output is the clock-time output 300 s
    earlier; mass in = out + hold-up throughout."""
    tau = 100.0
    clock = FlowClock(0.0, 1.0)
    p = FlowTimePredictor(RTDPredictor(TanksInSeries(tau, 1.0), t0=0.0, retain_s=1e4), clock)
    p.push(0.0, [1.0])
    clock.set_rate(200.0, 0.0)
    p.push(200.0, [0.0])
    clock.set_rate(500.0, 1.0)
    p.push(500.0, [1.0])
    y = p.output(np.array([150.0, 300.0, 450.0, 600.0]))[:, 0]
    f = lambda t: 1.0 - math.exp(-t / tau)  # noqa: E731
    assert y[0] == pytest.approx(f(150.0), abs=1e-3)
    # while paused the flow per flow-second is the one at the stop; × r = 0 kg/s of clock time
    assert y[1] == pytest.approx(f(200.0), abs=1e-3) and clock.rates([300.0])[0] == 0.0
    assert y[3] == pytest.approx(f(300.0), abs=1e-3)  # 600 s clock = 300 s of flow
    m = p.output_masses(np.array([200.0, 500.0]))[0, 0]
    assert m == pytest.approx(0.0, abs=1e-12)  # nothing leaves while paused
    assert p.holdup(300.0)[0] == pytest.approx(p.holdup(200.0)[0], abs=1e-12)
    out = p.output_masses(np.array([0.0, 700.0]))[0, 0]
    assert out + p.holdup(700.0)[0] == pytest.approx(200.0 + 200.0, rel=1e-9)


def test_paused_input_is_refused():
    clock = FlowClock(0.0, 1.0)
    p = FlowTimePredictor(RTDPredictor(TanksInSeries(10.0, 1.0), t0=0.0), clock)
    clock.set_rate(5.0, 0.0)
    with pytest.raises(ValueError):
        p.push(6.0, [1.0])  # mass into a paused line would be lost


def test_flow_law_rate():
    """r = (ṁ/ṁ₀)^(1−a)·(N/N₀)^b and g = r/(ṁ/ṁ₀); a = 0 is the line's law, bit for bit."""
    m, s = 0.8, 1.6
    assert FlowLaw(0.5).rate(m, s, True) == (m * s ** 0.5, s ** 0.5)
    r, g = FlowLaw(0.5, 0.3).rate(m, s, True)
    assert r == pytest.approx(m ** 0.7 * s ** 0.5, rel=1e-15) and g == pytest.approx(r / m)
    assert FlowLaw(0.5, 0.3).rate(m, s, False) == (0.0, g)  # g kept while the line stands


@pytest.mark.parametrize("a,b", [(0.0, 0.5), (0.4, 0.8)])
def test_flow_law_holdup_is_the_blender_law(a, b):
    """A feed ṁ through one tank (τ₀ = 100 s at ṁ₀, N₀) on a clock of :class:`FlowLaw` (a, b),
    the operating point changed at 1000 s to ṁ = 1.3ṁ₀, N = 0.7N₀: the hold-up settles at
    H = ṁ₀τ₀·(ṁ/ṁ₀)^a·(N₀/N)^b (Vanarase & Muzzio 2011's power law) and the output's mean
    residence time, H/ṁ."""
    tau0, law = 100.0, FlowLaw(b, a)
    clock = FlowClock(0.0, 1.0)
    p = FlowTimePredictor(RTDPredictor(TanksInSeries(tau0, 1.0), t0=0.0, retain_s=1e5), clock)
    p.push(0.0, [1.0])
    m, s = 1.3, 0.7
    r, g = law.rate(m, s, True)
    clock.set_rate(1000.0, r, g)
    p.push(1000.0, [m])
    h = p.holdup(1000.0 + 40 * tau0)[0]
    assert h == pytest.approx(tau0 * m ** a / s ** b, rel=1e-9)
    # a step of the feed then: ∫ (1 − F) dt of the response = τ = H/ṁ
    t1 = 1000.0 + 40 * tau0
    p.push(t1, [2 * m])
    ts = np.linspace(t1, t1 + 40 * tau0, 40001)
    f = (p.output(ts)[:, 0] * clock.rates(ts) - m) / m
    assert np.trapezoid(1.0 - f, ts) == pytest.approx(h / m, rel=1e-5)


def test_history_kept_is_the_flow_time_of_the_look_back():
    """With ``lookback_s`` the predictor keeps the flow time that passed in the last
    ``lookback_s`` of clock time (at least its ``retain_s``): outputs at clock times within the
    look-back stay exact at twice the rate, and a slow or paused line keeps the floor."""
    tau, look = 50.0, 300.0
    clock, ref_clock = FlowClock(0.0, 1.0), FlowClock(0.0, 1.0)
    p = FlowTimePredictor(RTDPredictor(TanksInSeries(tau, 2.0), t0=0.0, retain_s=look), clock,
                          lookback_s=look)
    ref = FlowTimePredictor(RTDPredictor(TanksInSeries(tau, 2.0), t0=0.0, retain_s=1e9),
                            ref_clock)
    rng = np.random.default_rng(1)
    t = 0.0
    for rate, until in ((1.0, 2000.0), (2.0, 5000.0), (0.0, 6000.0), (0.5, 9000.0)):
        for c in (clock, ref_clock):
            c.set_rate(t, rate)
        while t < until:
            v = [float(rng.uniform(0.5, 1.5))] if rate > 0 else [0.0]
            p.push(t, v)
            ref.push(t, v)
            t += 20.0
            # the flow time kept behind this input: what passed in the look-back, >= the floor
            want = max(look, clock.theta(t - 20.0) - clock.theta(t - 20.0 - look))
            assert p.p.retain_s == pytest.approx(want)
            ts = np.linspace(max(0.0, t - 20.0 - look), t - 20.0, 7)
            # exact up to the dropped segments' tail: max input × (1 − F) < 1.5 × tail_tol
            assert np.allclose(p.output(ts), ref.output(ts), rtol=0,
                               atol=1.5 * p.p.rtd.tail_tol + 1e-12)
        if rate == 2.0:  # twice the rate: twice the flow time of the look-back kept
            assert p.p.retain_s == pytest.approx(2 * look)
    assert p.p.n_segments < ref.p.n_segments  # bounded: the rest was dropped


def test_history_reaches_back_to_keep_from():
    """``keep_from``: outputs from that clock time on stay exact however long ago it was (a
    unit still being made), and the history is dropped once it moves on."""
    clock = FlowClock(0.0, 1.0)
    start = [0.0]
    p = FlowTimePredictor(RTDPredictor(TanksInSeries(20.0, 2.0), t0=0.0, retain_s=50.0), clock,
                          lookback_s=50.0, keep_from=lambda: start[0])
    for k in range(100):
        p.push(10.0 * k, [1.0 + (k % 3)])
    assert p.valid_from <= 0.0 + 1e-9  # everything since t = 0 kept: still to be attributed
    p.output_masses(np.array([0.0, 990.0]))  # does not raise
    start[0] = 900.0  # the unit was made: only the look-back and what follows 900 s
    p.push(1000.0, [1.0])
    assert 800.0 < p.valid_from <= 900.0 + 1e-9
    with pytest.raises(ValueError):
        p.output(np.array([100.0]))
