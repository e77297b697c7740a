"""Punch wear (``darkfab.factory.wear``): the Gamma process's mean and variance, the breakage
time, the RUL formula; the supervisor's maintenance planner on hand-made observations."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
import pytest

from darkfab.control import Event, LineObs, Maintenance, Observation, make_controller
from darkfab.control.maintenance import MaintenancePlanner
from darkfab.factory.wear import PunchWear, WearParams, rul_hours

P = WearParams(shape_per_h=4.0, scale=2.5, threshold=100.0, step_h=0.25,
               force_per_wear_kn=0.5, noise_sd_kn=1.0)


def test_gamma_process_mean_and_variance_over_replications():
    # E[W(t)] = a·b·t, Var[W(t)] = a·b²·t (van Noortwijk 2009)
    a, b, t = 4.0, 2.5, 12.0
    p = WearParams(a, b, threshold=1e3)
    rng = np.random.default_rng(np.random.SeedSequence(7))
    w = np.array([PunchWear(p, rng).wear_at(t * 3600.0) for _ in range(400)])
    se = w.std(ddof=1) / math.sqrt(len(w))
    assert abs(w.mean() - a * b * t) < 4 * se
    assert w.var(ddof=1) == pytest.approx(a * b * b * t, rel=0.25)
    assert (np.diff(PunchWear(p, rng).path) >= 0).all()  # monotone


def test_breakage_is_the_first_grid_time_at_the_threshold():
    pw = PunchWear(P, np.random.default_rng(1))
    step = P.step_h * 3600.0
    assert pw.wear_at(pw.life_s) >= P.threshold
    assert pw.wear_at(pw.life_s - step) < P.threshold
    assert pw.wear_at(0.0) == 0.0
    lives = []
    for _ in range(200):
        pw.replace()
        lives.append(pw.life_s / 3600.0)
    # mean life ≈ threshold / (a·b) = 10 h (+ up to one grid step)
    assert 9.5 < np.mean(lives) < 10.8


def test_rul_formula_and_estimate_from_the_symptom():
    assert P.mean_rate_per_h == 10.0
    assert rul_hours(0.0, P) == pytest.approx(10.0)
    assert rul_hours(85.0, P) == pytest.approx(1.5)
    assert rul_hours(130.0, P) == 0.0
    pw = PunchWear(P, np.random.default_rng(2))
    w, rul = pw.estimate(40.0)  # 40 kN drift / 0.5 kN per unit of wear
    assert w == 80.0 and rul == pytest.approx(2.0)
    noisy = PunchWear(P, np.random.default_rng(3), np.random.default_rng(4))
    u = noisy.life_s / 2
    readings = np.array([noisy.measure_force_drift_kn(u) for _ in range(2000)])
    assert readings.mean() == pytest.approx(0.5 * noisy.wear_at(u), abs=0.1)
    assert readings.std() == pytest.approx(1.0, rel=0.1)


def _obs(**kw) -> Observation:
    ln = dict(name="cdc", state="Execute", operating_h=5.0, force_drift_kn=40.0,
              wear_estimate=80.0, rul_h=2.0, in_maintenance=False) | kw
    return Observation(0.0, lines=MappingProxyType({"cdc": LineObs(**ln)}))


INSPECT = (Event(0.0, "inspection", "cdc"),)


def test_planner_policies():
    assert MaintenancePlanner("none").decide(INSPECT, _obs()) == []
    pred = MaintenancePlanner("predictive", rul_threshold_h=2.0)
    [cmd] = pred.decide(INSPECT, _obs())
    assert isinstance(cmd, Maintenance) and cmd.kind == "predictive" and "RUL 2" in cmd.reason
    assert pred.decide(INSPECT, _obs(rul_h=2.01)) == []
    assert pred.decide((), _obs()) == []  # only on inspections
    assert pred.decide(INSPECT, _obs(state="Held")) == []  # under repair
    assert pred.decide(INSPECT, _obs(in_maintenance=True)) == []
    prev = MaintenancePlanner("preventive", pm_interval_h=5.0)
    [cmd] = prev.decide(INSPECT, _obs())
    assert cmd.kind == "preventive" and "usage 5 h >= interval 5 h" in cmd.reason
    assert prev.decide(INSPECT, _obs(operating_h=4.9, rul_h=0.0)) == []
    with pytest.raises(ValueError):
        MaintenancePlanner("sometimes")


def test_supervisor_wakes_on_inspections_only_with_a_policy():
    assert "inspection" not in make_controller("auto-recovery").wakes_on
    c = make_controller("auto-recovery", {"maintenance": "predictive", "rul_threshold_h": 2.0})
    assert "inspection" in c.wakes_on
