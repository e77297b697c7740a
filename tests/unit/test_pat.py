"""NIR PAT sensor: noise, delay, dropout and drift; batch-independent readings."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from darkfab.factory.pat import NirSensor, NirSensorParams


def test_pat_noise_delay_drift_dropout():
    p = NirSensorParams(period_s=2.0, noise_sd=0.01, delay_s=5.0, dropout_prob=0.1,
                        dropout_windows=((100.0, 120.0),), drift_start_s=10_000.0,
                        drift_rate_per_s=1e-5)
    s = NirSensor(p, np.random.default_rng(11))
    n = 10_000
    ms = s.measure_many(np.full(n, 1.0))
    assert ms[3].sample_time_s == 6.0 and ms[3].available_s == 11.0
    assert s.next_sample_time_s == 2.0 * n
    lost = np.array([m.value is None for m in ms])
    t = np.array([m.sample_time_s for m in ms])
    assert lost[(t >= 100) & (t < 120)].all()
    free = (t < 100) | (t >= 120)
    rate, k = lost[free].mean(), free.sum()
    assert abs(rate - 0.1) < 5 * math.sqrt(0.1 * 0.9 / k)
    ok = ~lost & (t < 10_000)
    y = np.array([m.value for m in ms], dtype=object)[ok].astype(float)
    assert abs(y.mean() - 1.0) < 5 * 0.01 / math.sqrt(y.size)
    assert abs(y.std(ddof=1) / 0.01 - 1) < 5 / math.sqrt(2 * y.size)
    late = ~lost & (t >= 15_000)
    yl = np.array([m.value for m in ms], dtype=object)[late].astype(float)
    bias = 1e-5 * (t[late] - 10_000)
    assert abs((yl - 1.0 - bias).mean()) < 5 * 0.01 / math.sqrt(yl.size)


def test_pat_batches_do_not_change_readings():
    p = NirSensorParams(period_s=1.0, noise_sd=0.02, dropout_prob=0.2)
    a = NirSensor(p, np.random.default_rng(5)).measure_many(np.linspace(0.9, 1.1, 50))
    sb = NirSensor(p, np.random.default_rng(5))
    b = sb.measure_many(np.linspace(0.9, 1.1, 50)[:17]) + [
        sb.measure(x) for x in np.linspace(0.9, 1.1, 50)[17:]]
    assert a == b
    assert NirSensor(p, np.random.default_rng(5)).sample_times(3.5) == pytest.approx([0, 1, 2, 3])


def test_pat_measure_array_equals_measure_many():
    """The array form gives the same readings (NaN for lost ones) and notifies listeners with
    the same Measurement list."""
    p = NirSensorParams(period_s=15.0, noise_sd=0.01, delay_s=10.0, dropout_prob=0.2,
                        drift_start_s=100.0, drift_rate_per_s=1e-4)
    x = np.linspace(0.9, 1.1, 40)
    ref = NirSensor(p, np.random.default_rng(9)).measure_many(x)
    s = NirSensor(p, np.random.default_rng(9))
    seen: list = []
    s.listeners.append(seen.extend)
    t, avail, val = s.measure_array(x[:13])
    t2, avail2, val2 = s.measure_array(x[13:])
    assert seen == ref
    t, avail, val = np.append(t, t2), np.append(avail, avail2), np.append(val, val2)
    assert t.tolist() == [m.sample_time_s for m in ref]
    assert avail.tolist() == [m.available_s for m in ref]
    assert [None if math.isnan(v) else v for v in val.tolist()] == [m.value for m in ref]
    assert any(m.value is None for m in ref)


def test_pat_readings_taken_range_and_no_dropout():
    """Listeners get :class:`Readings`: the range of the readings taken (NaN propagates; none
    taken: inf, −inf), and the Measurement sequence. Without dropout the stream is the same as
    with a dropout probability too small ever to lose a reading."""
    p = NirSensorParams(period_s=1.0, noise_sd=0.01, dropout_windows=((2.0, 4.0),))
    s = NirSensor(p, np.random.default_rng(3))
    got: list = []
    s.listeners.append(got.append)
    ms = s.measure_many([1.0, 1.0, 1.0, math.nan, 1.0])
    (r,) = got
    assert len(r) == 5 and list(r) == ms and r[0] is ms[0] and r[1:3] == ms[1:3]
    n, lo, hi = r.taken_range()
    assert n == 3 and lo == min(ms[0].value, ms[1].value, ms[4].value)
    s.measure_many([1.0, math.nan])
    assert math.isnan(got[-1].taken_range()[1])
    s = NirSensor(replace(p, dropout_windows=((0.0, 9.0),)), np.random.default_rng(3))
    s.listeners.append(got.append)
    s.measure_array([1.0, 1.0])
    assert got[-1].taken_range() == (0, math.inf, -math.inf)
    ref = NirSensor(replace(p, dropout_prob=1e-300), np.random.default_rng(3)).measure_many(
        np.full(20, 1.0))
    assert NirSensor(p, np.random.default_rng(3)).measure_many(np.full(20, 1.0)) == ref
