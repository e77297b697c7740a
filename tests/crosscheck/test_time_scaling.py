"""Metamorphic test: stretching every time parameter by k stretches the whole run by k.

With every duration × k and every speed, rate and power ÷ k (time_scaling.py walks the resolved
scenario by the units in its field names), the same seeds draw the same random numbers, so the
event log must be the same sequence of events (kind, entity, unit, product, place), each at k
times its time (to rounding), with every number in its text either unchanged (a count, a state
of charge) or × k (a time, to its printed precision); throughput ÷ k, the same counts and
time-averages, lead times and state times × k. A time constant hidden in the code (a number of
seconds no scenario field controls) breaks this as soon as it matters.

Plants: ``packaging-line`` (no robots: failures held and aborted, rejects, acting states,
changeovers, finite buffers, the supervisor's escalation and lockout timers made explicit) and
two with robots (``tests/data/tiny_amr.toml`` and a day of ``amr-warehouse``: travel, loading,
batteries and charging, stalls).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario
from time_scaling import scale_times, to_toml

K = 2.5  # not a power of two: the products are rounded, as they would be for any real k
# relative tolerance on event times: rounding, plus the fleet's 1e-6 s margin on a battery
# threshold wake-up (control/fleet.py), which does not scale and shifts a departure by ~1e-4 s
REL = 1e-8
TINY = str(Path(__file__).resolve().parents[1] / "data" / "tiny_amr.toml")
# the supervisor's time parameters, at their documented defaults, written into the scenario so
# that the scaling walks them too (escalation, fault window, lockout, quarantine hold)
SUPERVISOR_TIMES = {"escalate_after_s": 14_400.0, "window_s": 3600.0, "lockout_s": 3600.0,
                    "hold_s": 3600.0}
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[-+]?\d+)?$")
KEYS = ("kind", "entity", "unit_id", "product", "location")


def _detail_matches(a: str, b: str, k: float) -> bool:
    ta, tb = a.replace("(", " ").replace(")", " ").replace(",", " ").split(), \
        b.replace("(", " ").replace(")", " ").replace(",", " ").split()
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb):
        if x == y:
            continue
        if not (NUMBER.match(x) and NUMBER.match(y)):
            return False
        # printed precision of each side (e.g. %g keeps 6 digits, so decimals differ)
        ulp_x, ulp_y = (0.5 * 10.0 ** -(len(v.split(".")[1]) if "." in v and "e" not in v
                                        else 0) for v in (x, y))
        if not math.isclose(float(y), float(x) * k, rel_tol=1e-6, abs_tol=k * ulp_x + ulp_y):
            return False
    return True


def _order_key(e: dict) -> tuple:
    return tuple(e[c] for c in KEYS) + (re.sub(r"[-+.e\d]", "", e["detail"]),)


def _compare_logs(a: Path, b: Path, k: float) -> int:
    """Same events, each at k × its time; events at one instant may come in another order
    (k·(x + y) and k·x + k·y can differ in the last bit, which turns a tie into a sequence), so
    each group of simultaneous events is compared as a set."""
    ea = pq.read_table(a / "events.parquet").to_pylist()
    eb = pq.read_table(b / "events.parquet").to_pylist()
    assert len(ea) == len(eb), f"{len(ea)} events, scaled run {len(eb)}"
    i = 0
    while i < len(ea):
        t = ea[i]["time_s"]
        j = i + 1
        while j < len(ea) and ea[j]["time_s"] - t <= 1e-9 * max(1.0, abs(t)):
            j += 1
        for x, y in zip(sorted(ea[i:j], key=_order_key), sorted(eb[i:j], key=_order_key)):
            assert all(x[c] == y[c] for c in KEYS), f"event {i}..{j} differ: {x} vs {y}"
            assert math.isclose(y["time_s"], k * x["time_s"], rel_tol=REL, abs_tol=1e-9), \
                f"event at {y['time_s']} s, expected {k} × {x['time_s']} s: {x}"
            assert _detail_matches(x["detail"], y["detail"], k), \
                f"event {i} text: {x['detail']!r} vs {y['detail']!r}"
        i = j
    return len(ea)


def _close(x, y, rel=1e-9):
    return math.isclose(x, y, rel_tol=rel, abs_tol=1e-9)


def _scaled_pair(tmp_path, name, horizon_s, spoil=lambda d: d):
    base = load_scenario(name, [f"scenario.horizon_s={horizon_s!r}"] if horizon_s else [])
    data = base.model_dump()
    assert not data.get("continuous_lines"), "the walk's units cover discrete plants"
    if data["controller"]["name"] == "auto-recovery":
        data["controller"]["params"] = {**SUPERVISOR_TIMES, **data["controller"]["params"]}
    runs = {}
    for label, d in (("base", data), ("scaled", spoil(scale_times(data, K)))):
        path = tmp_path / f"{label}.toml"
        path.write_text(to_toml(d))
        res = run_scenario(load_scenario(str(path)), out_dir=tmp_path / label)
        assert not res.summary["partial"]
        runs[label] = res
    return runs["base"], runs["scaled"]


def _check_scaled(base, scaled) -> None:
    a, b = base.summary, scaled.summary
    assert b["horizon_s"] == pytest.approx(K * a["horizon_s"])
    n = _compare_logs(base.out_dir, scaled.out_dir, K)
    assert n > 1000 and a["units_completed"] > 50
    assert a["units_completed"] == b["units_completed"]
    assert a["units_scrapped"] == b["units_scrapped"]
    assert _close(b["throughput_per_h"], a["throughput_per_h"] / K)
    assert _close(b["wip_mean"], a["wip_mean"], 1e-7)
    for q in ("mean", "max"):
        assert _close(b["lead_time_s"][q], K * a["lead_time_s"][q], 1e-6), q
    for q in ("p50", "p95"):  # from a log histogram, each within ±0.05 %
        assert _close(b["lead_time_s"][q], K * a["lead_time_s"][q], 1e-3), q
    for e, ka in a["equipment"].items():
        kb = b["equipment"][e]
        for kpi in ("utilization", "availability", "oee"):
            if isinstance(ka.get(kpi), float):
                assert _close(kb[kpi], ka[kpi], 1e-7), (e, kpi)
        for state, secs in ka["state_time_s"].items():
            assert _close(kb["state_time_s"][state], K * secs, 1e-7), (e, state)
    if "fleet" in a:
        assert a["fleet"]["tasks_delivered"] == b["fleet"]["tasks_delivered"]
        assert _close(b["fleet"]["tasks_per_h"], a["fleet"]["tasks_per_h"] / K)
        for r, ra in a["robots"].items():
            assert _close(b["robots"][r]["distance_m"], ra["distance_m"])
            assert _close(b["robots"][r]["soc_end"], ra["soc_end"], 1e-7)



@pytest.mark.parametrize("name, horizon_s", [("packaging-line", 86_400.0), (TINY, None),
                                             ("amr-warehouse", 86_400.0)])
def test_every_time_times_k_gives_every_event_time_times_k(tmp_path, name, horizon_s):
    _check_scaled(*_scaled_pair(tmp_path, name, horizon_s))


def test_the_comparison_fails_when_one_time_is_left_unscaled(tmp_path):
    """The test can fail: leave the robots' unload time unscaled and the logs no longer match."""
    def spoil(d):
        d["fleet"]["unload_time"] = {"dist": "constant", "value_s": 5.0}
        return d
    with pytest.raises(AssertionError, match="event"):
        _check_scaled(*_scaled_pair(tmp_path, TINY, None, spoil))
