"""Starved and blocked time of a tandem line with blocking, recomputed from the event log.

The oracle below does not use the simulator's accounting (no condition timers, no suspend
reason): it walks the event log of one unit and, while the unit is Suspended (it suspends
itself when no server can work), calls the time *blocked* while the unit still holds a loaded
unit it has not unloaded (it finished processing and waits for room downstream), and *starved*
while it holds nothing (it waits for input). A unit that unblocks onto an empty input becomes
starved at the instant of its ``unload`` event.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario

# tandem with finite buffers between the stations: s1 is blocked when q2 is full and starved
# when q1 is empty (the source refills q1 at once, so s1 starves only for an instant), s2
# both starves and blocks
OVERRIDES = ["buffers.q2.capacity_units=1", "buffers.q3.capacity_units=1",
             "scenario.horizon_s=6000", "scenario.warmup_s=500"]


def shares_from_events(events: list[dict], entity: str, warmup_s: float, end_s: float
                       ) -> dict[str, float]:
    """Blocked and starved seconds of ``entity`` after ``warmup_s`` from the event log
    (single server, batches of one, no transformation): a unit leaves the station by its
    ``unload`` to a buffer, or its ``complete`` at a sink (detail: the station)."""
    holding = 0  # units loaded and not yet unloaded
    suspended = False
    last = 0.0
    out = {"blocked": 0.0, "starved": 0.0}

    def advance(t: float) -> None:
        nonlocal last
        lo = max(last, warmup_s)
        if suspended and t > lo:
            out["blocked" if holding else "starved"] += t - lo
        last = t

    for e in events:
        mine = e["entity"] == entity
        absorbed = e["kind"] == "complete" and e["detail"] == entity  # by a sink, from it
        if not (mine or absorbed):
            continue
        advance(e["time_s"])
        if mine and e["kind"] == "load":
            holding += 1
        elif absorbed or (mine and e["kind"] in ("unload", "scrap")):
            holding -= 1
        elif e["kind"] == "state":
            suspended = e["detail"] == "Suspended"
    advance(end_s)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tandem-blocking")
    res = run_scenario(load_scenario("tandem", OVERRIDES), out_dir=out)
    events = pq.read_table(out / "events.parquet",
                           columns=["time_s", "kind", "entity", "detail"]).to_pylist()
    return res.summary, events


@pytest.mark.parametrize("station", ["s1", "s2", "s3"])
def test_blocked_and_starved_match_the_event_log(run, station):
    summary, events = run
    warm, end = summary["warmup_s"], summary["simulated_s"]
    oracle = shares_from_events(events, station, warm, end)
    k = summary["equipment"][station]
    assert k["blocked_s"] == pytest.approx(oracle["blocked"], abs=1e-6)
    assert k["starved_s"] == pytest.approx(oracle["starved"], abs=1e-6)
    # the Suspended state time is exactly starved + blocked (no Suspending delay here)
    assert k["state_time_s"]["Suspended"] == pytest.approx(oracle["blocked"] + oracle["starved"],
                                                           abs=1e-6)


def test_case_exercises_both_conditions(run):
    """The case is only a test if the stations really are blocked and starved."""
    summary, events = run
    warm, end = summary["warmup_s"], summary["simulated_s"]
    s1 = shares_from_events(events, "s1", warm, end)
    s2 = shares_from_events(events, "s2", warm, end)
    observed = end - warm
    assert s1["blocked"] / observed > 0.05
    assert s2["blocked"] / observed > 0.02 and s2["starved"] / observed > 0.02
    # the case of the bug this guards against: s2 unblocks (its unload) and finds q2 empty
    # (no load at the same instant), so it turns from blocked to starved while Suspended
    rows = [e for e in events if e["entity"] == "s2" and e["kind"] in ("load", "unload", "state")]
    onto_empty = sum(1 for i, e in enumerate(rows[:-1])
                     if e["kind"] == "unload" and not (rows[i + 1]["kind"] == "load"
                                                      and rows[i + 1]["time_s"] == e["time_s"])
                     and any(r["kind"] == "state" and r["detail"] == "Suspended"
                             for r in rows[max(0, i - 3):i]))
    assert onto_empty > 10


def test_report_splits_suspended_into_starved_and_blocked(run):
    """The report's state breakdown shows the same split as the event log."""
    from darkfab.scenarios.report import split_suspended

    summary, events = run
    warm, end = summary["warmup_s"], summary["simulated_s"]
    oracle = shares_from_events(events, "s2", warm, end)
    shown = split_suspended(summary["equipment"]["s2"])
    assert "Suspended" not in shown
    assert shown["Suspended (starved)"] == pytest.approx(oracle["starved"], abs=1e-6)
    assert shown["Suspended (blocked)"] == pytest.approx(oracle["blocked"], abs=1e-6)
    assert sum(shown.values()) == pytest.approx(end - warm)
