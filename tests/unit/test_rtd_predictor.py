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


@pytest.mark.parametrize("rtd", [TanksInSeries(40, 2.5),
                                 SeriesRTD([TanksInSeries(30, 3), TanksInSeries(8, 3)],
                                           max_points=2**14)], ids=repr)
def test_rtd_predictor_matches_direct_convolution(rtd):
    """The stored, telescoped form (Σ Δc_i·F(t − s_i), rows in arrays, pruned history, pushes
    one at a time and in batches, zero-length segments) against the direct sum over every input
    segment, y(t) = Σ_i c_i·[F(t − s_i) − F(t − e_i)] and Y(a, b) from ∫F, to 1e-12 of the
    output scale; input and hold-up close to 1e-12."""
    rng = np.random.default_rng(11)
    p = RTDPredictor(rtd, retain_s=300.0)
    starts: list[float] = []
    values: list[np.ndarray] = []
    t = 0.0
    while t < 4000.0:
        k = int(rng.integers(1, 6))
        s = t + np.cumsum(rng.choice([0.0, 0.7, 3.0, 30.0], size=k))  # some zero-length
        v = rng.uniform(0.5, 1.5, size=(k, 3)) * [0.1, 0.89, 0.01]
        if k == 1:
            p.push(float(s[0]), {"api": v[0, 0], "exc": v[0, 1], "lub": v[0, 2]})
        else:
            p.push_many(s, v)
        starts += s.tolist()
        values += list(v)
        t = float(s[-1]) + float(rng.uniform(0.1, 40.0))
    s_all = np.array(starts)
    v_all = np.array(values)
    e_all = np.append(s_all[1:], np.inf)
    live = slice(int(np.searchsorted(s_all, p._starts[0], side="right")) - 1, None)
    now = starts[-1]
    ts = np.sort(rng.uniform(p.valid_from, now + 200.0, 300))

    def direct(x: np.ndarray, fn, part: slice = slice(None)) -> np.ndarray:
        s, e, v = s_all[part], e_all[part], v_all[part]
        fin = np.isfinite(e)
        w = fn(x[:, None] - s) - np.where(fin, fn(x[:, None] - np.where(fin, e, 0.0)), 0.0)
        return w @ v

    y = p.output(ts)
    assert np.max(np.abs(y - direct(ts, rtd.cdf, live))) < 1e-12 * 1.5
    # the dropped segments weigh less than tail_tol at any t ≥ valid_from
    assert np.max(np.abs(y - direct(ts, rtd.cdf))) <= rtd.tail_tol * 1.5
    cuts = np.sort(rng.uniform(p.valid_from, now + 200.0, 12))
    m = p.output_masses(cuts)
    assert np.max(np.abs(m - np.diff(direct(cuts, rtd.cdf_integral, live), axis=0))) < 1e-12 * 300
    assert np.max(np.abs(m - np.diff(direct(cuts, rtd.cdf_integral), axis=0))) < 1e-9 * 300
    assert p.output_mass(cuts[0], cuts[-1]) == pytest.approx(m.sum(axis=0), rel=1e-12)
    t_end = now + 50.0
    inp = (np.minimum(e_all, t_end) - s_all) @ v_all
    assert p.cumulative_input(t_end) == pytest.approx(inp, rel=1e-12)
    out = direct(np.array([t_end]), rtd.cdf_integral)[0]
    assert p.cumulative_output(t_end) == pytest.approx(out, rel=1e-9)
    assert p.n_segments < len(starts) / 2  # old segments were dropped


@pytest.mark.parametrize("make", [
    lambda: SeriesRTD([TanksInSeries(100.0, 3.0), TanksInSeries(13.3, 3.0)]),
    lambda: AxialDispersion(60.0, 12.0, boundary="open"),
    lambda: AxialDispersion(60.0, 12.0, boundary="closed"),
    lambda: TanksInSeries(40.0, 2.5)])
def test_outer_kernels_equal_cdf_of_the_differences_bit_for_bit(make):
    """cdf_outer / cdf_integral_outer (the predictor's in-place kernels) give exactly
    cdf(t[:, None] − s) and cdf_integral(t[:, None] − s), beyond both ends of the grid too."""
    rtd = make()
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(-50.0, 3.0 * rtd.tail_s, 120))
    s = np.sort(rng.uniform(-100.0, 2.0 * rtd.tail_s, 37))
    d = t[:, None] - s
    assert np.array_equal(rtd.cdf_outer(t, s), rtd.cdf(d))
    assert np.array_equal(rtd.cdf_integral_outer(t, s), rtd.cdf_integral(d))
    assert rtd.cdf_outer(t[:0], s).shape == (0, 37)


def test_push_many_of_mappings_equals_one_push_each():
    """The line collects a sync's lot pushes and pushes them in one call: the predictor then
    holds the same segments (zero-length ones replaced alike, new channels in the same order),
    so outputs, output masses and lot fractions are equal bit for bit."""
    rtd = SeriesRTD([TanksInSeries(100.0, 3.0), TanksInSeries(13.3, 3.0)])
    one = RTDPredictor(rtd, retain_s=300.0)
    many = RTDPredictor(rtd, retain_s=300.0)
    rng = np.random.default_rng(8)
    t = 0.0
    for _ in range(200):
        batch = []
        for _ in range(int(rng.integers(1, 6))):
            t += float(rng.choice([0.0, rng.uniform(0.0, 40.0)]))  # same-time pushes too
            lots = rng.choice(12, size=int(rng.integers(1, 4)), replace=False)
            batch.append((t, {f"lot{k}": float(rng.uniform(0.0, 0.01)) for k in lots}))
        for tb, flows in batch:
            one.push(tb, flows)
        many.push_many([tb for tb, _ in batch], [flows for _, flows in batch])
        assert one.channels == many.channels
    ts = np.linspace(max(one.valid_from, many.valid_from), t + 200.0, 301)
    assert np.array_equal(one.output(ts), many.output(ts))
    assert np.array_equal(one.output_masses(ts), many.output_masses(ts))
    assert one.lot_fractions(ts[0], ts[-1]) == many.lot_fractions(ts[0], ts[-1])


@pytest.mark.parametrize("at_last", [True, False])
def test_output_with_equals_output_after_the_pushes(at_last):
    """output_with(t, starts, values) is output(t) of a copy that pushed the rows (the first
    row replacing the open segment when it starts with it), and leaves the predictor as it
    was."""
    import copy
    r = SeriesRTD([TanksInSeries(20, 2), TanksInSeries(30, 1)])
    p = RTDPredictor(r, retain_s=5000.0)  # nothing pruned: the same live segments
    rng = np.random.default_rng(4)
    starts = np.cumsum(rng.uniform(1.0, 30.0, 40))
    p.push_many(starts, rng.uniform(0.5, 1.5, (40, 2)))
    s0 = starts[-1] if at_last else starts[-1] + 7.0
    new_s = s0 + np.concatenate([[0.0], np.cumsum(rng.uniform(1.0, 30.0, 9))])
    new_v = rng.uniform(0.5, 1.5, (10, 2))
    ts = np.linspace(starts[-1] - 20.0, new_s[-1] + 100.0, 200)
    before = p.output(ts)
    ref = copy.deepcopy(p)
    ref.push_many(new_s, new_v)
    assert p.output_with(ts, new_s, new_v) == pytest.approx(ref.output(ts), rel=1e-12,
                                                            abs=1e-15)
    assert np.array_equal(p.output(ts), before)
