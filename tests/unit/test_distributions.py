"""Random-variate samplers: the sample mean agrees with the sampler's theoretical ``.mean``
within a tolerance derived from the sample itself (standard errors), not a seeded number."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from darkfab.factory.distributions import BLOCK, Sampler, make_sampler
from darkfab.factory.random_streams import RandomStreams

N = 20_000
Z = 4.5  # standard errors allowed


def draws(dist: str, params: dict, n: int = N, name: str = "x") -> tuple[Sampler, np.ndarray]:
    rng = RandomStreams(2024, 0).stream(f"test.{dist}.{name}")
    s = make_sampler(name, dist, params, rng)
    assert isinstance(s, Sampler) and callable(s)
    x = np.array([s() for _ in range(n)])
    return s, x


def assert_mean_ok(x: np.ndarray, mean: float) -> None:
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert abs(x.mean() - mean) <= Z * se + 1e-12 * max(1.0, abs(mean)), (x.mean(), mean, se)


# (dist, params, theoretical mean computed here, independently of the module)
CASES = [
    ("exponential", {"mean": 3.0}, 3.0),
    ("uniform", {"low": 2.0, "high": 5.0}, 3.5),
    ("triangular", {"low": 1.0, "mode": 2.0, "high": 6.0}, 3.0),
    ("normal", {"mean": 10.0, "sd": 2.0}, 10.0 + 2.0 * stats.norm.pdf(-5) / stats.norm.sf(-5)),
    ("normal", {"mean": 1.0, "sd": 1.0},  # heavily truncated at 0
     float(stats.truncnorm.mean(-1.0, np.inf, loc=1.0, scale=1.0))),
    ("normal", {"mean": 5.0, "sd": 3.0, "low": 2.0, "high": 6.0},
     float(stats.truncnorm.mean(-1.0, 1.0 / 3.0, loc=5.0, scale=3.0))),
    ("lognormal", {"mean": 40.0, "cv": 0.3}, 40.0),
    ("lognormal", {"mean": 2.0, "cv": 1.0}, 2.0),
    ("gamma", {"mean": 8.0, "cv": 0.1}, 8.0),
    ("gamma", {"mean": 5.0, "cv": 1.5}, 5.0),
    ("weibull", {"shape": 1.5, "scale": 100.0}, 100.0 * math.gamma(1 + 1 / 1.5)),
    ("weibull", {"shape": 0.8, "scale": 2.0}, 2.0 * math.gamma(1 + 1 / 0.8)),
    ("empirical", {"values": [1.0, 2.0, 7.0]}, 10.0 / 3.0),
    ("empirical", {"values": [1.0, 2.0, 7.0], "weights": [3, 1, 1]}, (3 + 2 + 7) / 5.0),
]


@pytest.mark.parametrize("dist, params, mean", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_sample_mean_matches_theoretical_mean(dist, params, mean):
    s, x = draws(dist, params)
    assert s.mean == pytest.approx(mean, rel=1e-9)
    assert_mean_ok(x, s.mean)


@pytest.mark.parametrize("dist, params", [(d, p) for d, p, _ in CASES])
def test_support(dist, params):
    _, x = draws(dist, params, n=4 * BLOCK + 3)
    assert np.isfinite(x).all()
    assert (x >= 0).all()
    lo = params.get("low", 0.0 if dist == "normal" else None)
    hi = params.get("high")
    if dist in ("uniform", "triangular", "normal") and lo is not None:
        assert (x >= lo).all()
    if dist in ("uniform", "triangular", "normal") and hi is not None:
        assert (x <= hi).all()
    if dist == "empirical":
        assert set(np.unique(x)) <= set(params["values"])


def test_constant():
    s, x = draws("constant", {"value": 4.25}, n=2 * BLOCK + 1)
    assert s.mean == 4.25
    assert (x == 4.25).all()


@pytest.mark.parametrize("dist, mean, cv", [("lognormal", 40.0, 0.3), ("lognormal", 2.0, 1.0),
                                            ("gamma", 8.0, 0.1), ("gamma", 5.0, 1.5)])
def test_coefficient_of_variation(dist, mean, cv):
    _, x = draws(dist, {"mean": mean, "cv": cv}, name="cv")
    m, sd = x.mean(), x.std(ddof=1)
    # delta-method standard error of the sample cv, from the sample's own moments
    kurt = stats.kurtosis(x, fisher=False)
    rel_se_sd = math.sqrt(max(kurt - 1.0, 0.0) / (4 * x.size))
    rel_se_m = (sd / m) / math.sqrt(x.size)
    tol = Z * (rel_se_sd + rel_se_m) * cv
    assert abs(sd / m - cv) <= tol, (sd / m, cv, tol)


def test_empirical_weights_give_frequencies():
    _, x = draws("empirical", {"values": [1.0, 2.0, 7.0], "weights": [3, 1, 1]})
    for v, p in [(1.0, 0.6), (2.0, 0.2), (7.0, 0.2)]:
        f = float(np.mean(x == v))
        assert abs(f - p) <= Z * math.sqrt(p * (1 - p) / x.size)


def test_same_stream_same_values_whatever_the_call_pattern():
    """Values depend only on the stream and the number of draws, not on block boundaries."""
    a = make_sampler("a", "exponential", {"mean": 1.0}, RandomStreams(1, 0).stream("s"))
    b = make_sampler("b", "exponential", {"mean": 1.0}, RandomStreams(1, 0).stream("s"))
    xa = [a() for _ in range(3 * BLOCK + 5)]
    xb = [b() for _ in range(3 * BLOCK + 5)]
    assert xa == xb
    assert len(set(xa)) == len(xa)  # no block handed out twice
    assert all(isinstance(v, float) for v in xa[:10])


def test_unknown_distribution_is_an_error():
    with pytest.raises(ValueError):
        make_sampler("x", "cauchy", {}, RandomStreams(1, 0).stream("x"))
