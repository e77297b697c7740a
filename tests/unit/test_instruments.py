"""Load-cell flow (darkfab.factory.instruments) and lot draws (darkfab.factory.mismatch) against
theory: the filtered noisy flow's stationary variance, the volumetric estimate while blind, and
per-lot draws that do not depend on the order of lots."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from darkfab.factory.instruments import LoadCellFlow, blind_factors
from darkfab.factory.mismatch import LotDraws, LotVariation, screw_wear_factor


def _cells(n: int, P: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.arange(n) * P
    return a, a + P


def test_ideal_load_cell_reads_the_truth_and_blind_divides_by_k():
    lc = LoadCellFlow(0.0, 0.0, 10.0, None)
    a, b = _cells(6, 10.0)
    x = np.array([1.0, 1.1, 0.9, 1.0, 1.2, 1.0])
    k = np.array([np.nan, np.nan, 1.1, 1.1, np.nan, np.nan])
    y = lc.measure(a, b, x, k)
    assert np.allclose(y, [1.0, 1.1, 0.9 / 1.1, 1.0 / 1.1, 1.2, 1.0], rtol=0, atol=0)


def test_filtered_load_cell_noise_variance_matches_theory():
    """y_j − F = (1 − a)/P·[−n_j + (1 − a)·Σ_{i≥1} a^(i−1)·n_(j−i)]: Var = (1 − a)²σ²/P²·2/(1 + a)
    (white reading noise n ~ N(0, σ²) differenced over the cell P and first-order filtered)."""
    P, T, sd, F = 10.0, 40.0, 0.002, 0.01
    lc = LoadCellFlow(sd, T, P, np.random.default_rng(7))
    n = 200_000
    a, b = _cells(n, P)
    y = lc.measure(a, b, np.full(n, F), np.full(n, np.nan))[1000:]
    al = math.exp(-P / T)
    var = (1 - al) ** 2 * sd ** 2 / P ** 2 * 2 / (1 + al)
    assert abs(y.mean() - F) < 5 * math.sqrt(var / y.size * 20)  # correlated: ~20 cells
    assert y.var() == pytest.approx(var, rel=0.05)


def test_filter_follows_a_step_with_its_time_constant():
    P, T = 1.0, 20.0
    lc = LoadCellFlow(0.0, T, P, None)
    a, b = _cells(200, P)
    x = np.where(a < 50, 1.0, 2.0)
    y = lc.measure(a, b, x, np.full(200, np.nan))
    j = 50 + 20  # one time constant after the step: 1 − e^−1 of the way
    assert y[j - 1] == pytest.approx(2.0 - math.exp(-20 * P / T), rel=1e-9)


def test_blind_factors_cover_refills_and_scale_with_wear():
    starts = np.array([0.0, 10.0, 20.0, 30.0])
    k = blind_factors(starts, [(10.0, 30.0, 1.05)], 0.9)
    assert np.isnan(k[0]) and np.isnan(k[3])
    assert k[1] == pytest.approx(1.05 * 0.9) and k[2] == pytest.approx(1.05 * 0.9)
    assert float(screw_wear_factor(86400.0 * 10, 0.01)) == pytest.approx(0.9)
    assert float(screw_wear_factor(86400.0 * 1000, 0.01)) == 0.5


def test_lot_draws_do_not_depend_on_lot_order():
    def streams(seed):
        return lambda lot: np.random.default_rng([seed, zlib.crc32(lot.encode())])
    var = LotVariation(0.01, 0.03, 0.02)
    d1, d2 = LotDraws(var, streams(1)), LotDraws(var, streams(1))
    x = d1("lot-b")
    d2("lot-a")
    assert d2("lot-b") == x
    assert d1("lot-b") is x  # drawn once
    assert LotDraws(LotVariation(), streams(1))("lot-a").ff_multiplier == 1.0
    many = [LotDraws(var, streams(s))("x") for s in range(2000)]
    pot = np.array([p.potency for p in many])
    assert pot.mean() == pytest.approx(1.0, abs=4 * 0.01 / math.sqrt(2000))
    assert pot.std() == pytest.approx(0.01, rel=0.1)
    assert d1.ff_multiplier({"lot-b": 1.0}) == pytest.approx(x.bulk_density * x.feed_factor)
