"""Content uniformity tests (USP <905> / Ph. Eur. 2.9.40, Ph. Eur. 2.9.47) against hand-computed
acceptance values and the chapters' boundary cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkfab.factory.content_uniformity import (
    OPTION1_ROWS, TableNotSourced, acceptance_value, count_outside, option1_limits,
    option2_limits, ph_eur_2947_option1, ph_eur_2947_option2, reference_value, usp_905)

# 95, 96, ..., 104: mean 99.5, s = sqrt(sum((i - 4.5)^2, i = 0..9) / 9) = sqrt(82.5 / 9)
TEN = np.arange(95.0, 105.0)
S_TEN = math.sqrt(82.5 / 9.0)


def test_reference_value_follows_the_chapter_cases():
    assert reference_value(99.0) == 99.0  # 98.5 <= X <= 101.5: M = X
    assert reference_value(97.0) == 98.5
    assert reference_value(101.6) == 101.5
    assert reference_value(98.5) == 98.5 and reference_value(101.5) == 101.5
    assert reference_value(103.0, target_pct=105.0) == 103.0  # T > 101.5: M = X up to T
    assert reference_value(106.0, target_pct=105.0) == 105.0
    assert reference_value(97.0, target_pct=105.0) == 98.5


def test_acceptance_value_by_hand():
    av, m, mean, s = acceptance_value(TEN, 2.4)
    assert mean == pytest.approx(99.5) and s == pytest.approx(S_TEN) and m == 99.5
    assert av == pytest.approx(2.4 * S_TEN)  # 7.2664
    av, m, _, _ = acceptance_value(TEN - 5.0, 2.4)  # mean 94.5 < 98.5: M = 98.5
    assert m == 98.5 and av == pytest.approx(4.0 + 2.4 * S_TEN)
    av, m, _, _ = acceptance_value(TEN + 5.0, 2.4)  # mean 104.5 > 101.5: M = 101.5
    assert m == 101.5 and av == pytest.approx(3.0 + 2.4 * S_TEN)


def test_usp_905_stage_1_pass_and_the_l1_boundary():
    r = usp_905(TEN)
    assert r.passed and r.stage == 1 and r.n == 10
    assert r.acceptance_value == pytest.approx(2.4 * S_TEN)
    av = r.acceptance_value
    assert usp_905(TEN, l1=av).passed  # AV = L1 complies (<=)
    with pytest.raises(ValueError, match="stage 2 needs 30"):
        usp_905(TEN, l1=av - 1e-9)
    with pytest.raises(ValueError, match="needs 10"):
        usp_905(TEN[:9])


def test_usp_905_stage_2_by_hand():
    # first 10: five at 80 and five at 120: mean 100, s = sqrt(10 * 400 / 9): AV 50.6 > 15
    first = np.array([80.0, 120.0] * 5)
    thirty = np.concatenate([first, np.full(20, 100.0)])  # s = sqrt(4000 / 29) = 11.744
    r = usp_905(thirty)
    assert r.stage == 2 and r.n == 30 and not r.passed
    assert r.acceptance_value == pytest.approx(2.0 * math.sqrt(4000.0 / 29.0))
    assert r.outside_l2 == 0 and "AV" in r.reasons[0]
    # stage 2 with AV <= L1 but one unit outside (1 ± 0.25)·M fails on the zero tolerance
    x = np.concatenate([np.array([74.0, 126.0] * 5), np.full(20, 100.0)])
    r = usp_905(x)  # mean 100: 74 and 126 are outside 75–125; s = sqrt(10*676/29) = 15.27
    assert r.stage == 2 and r.outside_l2 == 10 and not r.passed


def test_count_outside_limits_are_inclusive():
    assert count_outside([75.0, 125.0, 100.0], 100.0, 25.0) == 0  # on the limit: inside
    assert count_outside([74.99, 125.01], 100.0, 25.0) == 2
    assert count_outside([85.0, 84.9, 115.1], 100.0, 15.0) == 2


def test_option1_table_only_sourced_rows():
    assert OPTION1_ROWS == ((385, 400, 2.23, 3), (407, 450, 2.24, 3), (490, 500, 2.24, 4))
    assert option1_limits(385) == option1_limits(400) == (2.23, 3)
    assert option1_limits(407) == option1_limits(450) == (2.24, 3)
    assert option1_limits(490) == option1_limits(500) == (2.24, 4)
    for n in (100, 384, 401, 406, 451, 489, 501, 1000):
        with pytest.raises(TableNotSourced):
            option1_limits(n)
    with pytest.raises(TableNotSourced):
        option2_limits(400)


def test_option1_by_hand():
    # 397 units at 100 and 3 at 70: mean 99.775, SS = 397·0.225² + 3·29.775² = 2679.75
    x = np.concatenate([np.full(397, 100.0), np.full(3, 70.0)])
    s = math.sqrt(2679.75 / 399.0)
    r = ph_eur_2947_option1(x)
    assert r.k == 2.23 and r.c2 == 3 and r.reference_pct == pytest.approx(99.775)
    assert r.sd_pct == pytest.approx(s) and r.acceptance_value == pytest.approx(2.23 * s)
    assert r.outside_l2 == 3 and r.passed  # 70 < 0.75·99.775 = 74.83: 3 units, c2 = 3
    x4 = np.concatenate([np.full(396, 100.0), np.full(4, 70.0)])
    r4 = ph_eur_2947_option1(x4)
    assert r4.outside_l2 == 4 and not r4.passed and "c2 = 3" in r4.reasons[-1]
    # the AV limit: 200 at 100 - d and 200 at 100 + d: s = d·sqrt(400/399)
    for d, ok in ((6.0, True), (7.0, False)):
        y = np.concatenate([np.full(200, 100.0 - d), np.full(200, 100.0 + d)])
        r = ph_eur_2947_option1(y)
        assert r.acceptance_value == pytest.approx(2.23 * d * math.sqrt(400 / 399))
        assert r.passed is ok
    with pytest.raises(TableNotSourced):
        ph_eur_2947_option1(np.full(600, 100.0))
    r = ph_eur_2947_option1(np.full(600, 100.0), k=2.5, c2=5)  # constants from the user
    assert r.passed and r.acceptance_value == 0.0
    with pytest.raises(ValueError, match="n ≥ 100"):
        ph_eur_2947_option1(np.full(99, 100.0), k=2.0, c2=0)


def test_option2_counts():
    # 390 at 100 and 10 at 80: mean 99.5 = M; 80 < 0.85·99.5 = 84.575, inside 0.75·M
    x = np.concatenate([np.full(390, 100.0), np.full(10, 80.0)])
    r = ph_eur_2947_option2(x, c1=10, c2=0)
    assert r.reference_pct == pytest.approx(99.5)
    assert (r.outside_l1, r.outside_l2, r.passed) == (10, 0, True)
    assert not ph_eur_2947_option2(x, c1=9, c2=0).passed
    y = np.concatenate([np.full(399, 100.0), [70.0]])
    assert not ph_eur_2947_option2(y, c1=5, c2=0).passed
    assert ph_eur_2947_option2(y, c1=5, c2=1).passed
