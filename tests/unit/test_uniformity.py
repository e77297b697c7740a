"""The IPC's running uniformity statistics against numpy over the whole sample."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkfab.agents.line.regulation import Uniformity


def test_running_statistics_match_the_whole_sample():
    x = 250.0 + 2.5 * np.random.default_rng(7).standard_normal(1000)
    u = Uniformity()
    for chunk in np.array_split(x, 50):  # 20 tablets a unit, as the IPC adds them
        u.add(chunk.tolist())
    u.add([])
    s = u.summary()
    assert s["n"] == 1000
    assert s["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert s["rsd_pct"] == pytest.approx(100 * x.std(ddof=1) / x.mean(), rel=1e-9)
    assert (s["min"], s["max"]) == (x.min(), x.max())


def test_empty_and_single():
    assert math.isnan(Uniformity().summary()["mean"])
    one = Uniformity()
    one.add([3.0])
    assert one.summary()["mean"] == 3.0 and math.isnan(one.summary()["rsd_pct"])
