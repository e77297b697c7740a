"""Bottleneck detection across machines and transport (active-period method, Roser et al.
2001, extended to transport routes, the fleet, lanes, crossings and chargers:
:mod:`darkfab.factory.transport_activity`).

On ``amr-warehouse`` the narrow aisle to the dock limits throughput: widening it
(``amr-warehouse-wide``) raises it by about a third, so the transport system is the bottleneck
there and the blister former is the one on the widened variant. One simulated day is enough for
the verdict; ``tests/benchmarks/bench_bottleneck.py`` shows it over 7 days and 3 replications.
"""

from __future__ import annotations

import pytest

from darkfab.factory.kpis import ActivePeriods
from darkfab.factory.transport_activity import TransportActivity
from darkfab.scenarios import load_scenario, run_scenario

TRANSPORT_KINDS = {"route", "fleet", "lane", "node", "chargers"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name in ("amr-warehouse", "amr-warehouse-wide"):
        s = load_scenario(name, ["scenario.horizon_s=86400"])
        out[name] = run_scenario(s, out_dir=tmp_path_factory.mktemp(name),
                                 verify_run=False).summary
    return out


def test_narrow_aisle_names_the_transport_system(runs):
    narrow, wide = runs["amr-warehouse"], runs["amr-warehouse-wide"]
    # the premise: the aisle limits throughput (widening it raises throughput by > 20 %)
    assert wide["throughput_per_h"] > 1.2 * narrow["throughput_per_h"]
    top = narrow["bottlenecks"][0]
    assert top["kind"] == "route" and top["resource"] == "transport case_packer → case_dock"
    # its busiest lane is on the aisle, its busiest crossing the holding point before it
    lanes = [r for r in narrow["bottlenecks"] if r["kind"] == "lane"]
    assert max(lanes, key=lambda r: r["active_share"])["resource"] in ("lane aisle-w5",
                                                                      "lane aisle-dock")


def test_wide_aisle_names_a_machine(runs):
    wide = runs["amr-warehouse-wide"]
    top = wide["bottlenecks"][0]
    assert top["kind"] == "machine" and top["resource"] == "blister_former"
    assert wide["bottleneck_ranking"][0] == "blister_former"


def test_ranking_is_complete_and_ordered(runs):
    for s in runs.values():
        b = s["bottlenecks"]
        assert [r["rank"] for r in b] == list(range(1, len(b) + 1))
        periods = [r["mean_active_period_s"] for r in b]
        assert periods == sorted(periods, reverse=True)
        assert {r["resource"] for r in b if r["kind"] == "machine"} == set(s["equipment"])
        assert {r["kind"] for r in b} - {"machine"} <= TRANSPORT_KINDS
        assert all(0.0 <= r["active_share"] <= 1.0 + 1e-9 for r in b)


def test_active_periods_join_a_gap_of_zero_length():
    p = ActivePeriods(warmup_s=10.0)
    p.set(0.0, True)
    p.set(20.0, False)   # 10 s after warm-up
    p.set(20.0, True)    # resumed at once: the same period
    p.set(50.0, False)
    p.set(60.0, True)
    p.set(64.0, False)
    assert p.count == 2 and p.mean(100.0) == pytest.approx((40.0 + 4.0) / 2)
    assert p.active_time(100.0) == pytest.approx(44.0)


def test_fleet_route_and_chargers_activity_by_hand():
    a = TransportActivity(0.0, ["r1", "r2"], {("lane", "a", "b"): 1}, ["c1"])
    a.robot_state(0.0, "r1", "travel_empty", None)
    a.robot_state(5.0, "r2", "loading", "a")       # fleet active from 5 s
    a.robot_state(9.0, "r1", "idle", "b")          # ... to 9 s
    a.robot_state(10.0, "r1", "charging", "c1")    # fleet and chargers (one) from 10 s
    a.robot_state(30.0, "r1", "idle", "c1")
    a.holders(2.0, ("lane", "a", "b"), 1)
    a.holders(7.0, ("lane", "a", "b"), 0)
    a.trip(1.0, "x → y", True)
    a.trip(3.0, "x → y", True)
    a.trip(4.0, "x → y", False)
    a.trip(8.0, "x → y", False)
    r = a.resources(40.0, 40.0)
    assert r["fleet"]["mean_active_period_s"] == pytest.approx((4.0 + 20.0) / 2)
    assert r["chargers"]["mean_active_period_s"] == pytest.approx(20.0)
    assert r["lane a-b"]["mean_active_period_s"] == pytest.approx(5.0)
    assert r["transport x → y"]["mean_active_period_s"] == pytest.approx(7.0)
    assert r["transport x → y"]["active_share"] == pytest.approx(7.0 / 40.0)
