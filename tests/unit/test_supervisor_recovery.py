"""The built-in supervisor's fault-recovery decisions on hand-made observations: watchdog
reactions (retry a lost wake-up, recover a lost recovery), escalation after too many faults
(lockout and controlled shutdown upstream, resumed at the end), and the flow graph query."""

from __future__ import annotations

from types import MappingProxyType as MP

from darkfab.control import (AutoRecoverySupervisor, BufferObs, EquipmentInfo, EquipmentObs,
                             Event, Observation, PackMLCommand, PlantInfo, WakeUp)
from darkfab.factory.packml import State

FEEDS = {"src": ("q1",), "q1": ("m1",), "m1": ("q2",), "q2": ("m2",), "m2": ("out",)}


def info() -> PlantInfo:
    eq = {"m1": EquipmentInfo("m1", "q1", 1, ("jam",), ("hold",), ("q2",), 1),
          "m2": EquipmentInfo("m2", "q2", 1, ("jam",), ("hold",), ("out",), 2)}
    return PlantInfo(MP(eq), ("q1", "q2"), (), ("src",), 1e6, 0.0, feeds=MP(FEEDS))


def obs(t: float, states: dict, q: dict, alarms: dict | None = None,
        cap: int | None = 5) -> Observation:
    alarms = alarms or {}
    eq = {u: EquipmentObs(u, st, "Production", "x", q[EQ_IN[u]], tuple(alarms.get(u, ())), 0, 0,
                          0) for u, st in states.items()}
    bufs = {b: BufferObs(b, lvl, cap) for b, lvl in q.items()}
    return Observation(t, MP(eq), MP(bufs))


EQ_IN = {"m1": "q1", "m2": "q2"}
RUN = {"m1": State.EXECUTE, "m2": State.EXECUTE}


def test_upstream_is_farthest_first():
    assert info().upstream("m2") == ["src", "m1"]
    assert info().upstream("m1") == ["src"]


def test_watchdog_retries_a_lost_wake_up_only():
    sup = AutoRecoverySupervisor()
    sup.reset(info())
    wd = Event(100.0, "watchdog", "m2", "Suspended 3600 s")
    st = {"m1": State.EXECUTE, "m2": State.SUSPENDED}
    # a full batch waiting (2) and room downstream (a sink): a lost wake-up -> Stop (retry)
    (cmd,) = sup.decide((wd,), obs(100.0, st, {"q1": 0, "q2": 2}))
    assert cmd.unit == "m2" and cmd.command == "Stop" and "lost wake-up" in cmd.reason
    # less than a batch: starved, nothing to do
    assert sup.decide((wd,), obs(100.0, st, {"q1": 0, "q2": 1})) == []
    # m1 blocked: its output buffer is full
    wd1 = Event(100.0, "watchdog", "m1", "Suspended 3600 s")
    st1 = {"m1": State.SUSPENDED, "m2": State.HELD}
    assert sup.decide((wd1,), obs(100.0, st1, {"q1": 3, "q2": 5}, {"m2": ["jam"]})) == []
    # a Held unit whose alarm is gone (its recovery was lost) is recovered
    (cmd,) = sup.decide((Event(100.0, "watchdog", "m2", "Held 3600 s"),),
                        obs(100.0, {"m1": State.EXECUTE, "m2": State.HELD}, {"q1": 0, "q2": 0}))
    assert cmd.command == "Unhold" and cmd.reason


def test_too_many_faults_lock_the_unit_out_and_stop_upstream():
    sup = AutoRecoverySupervisor(max_faults=2, window_s=100.0, lockout_s=500.0,
                                 escalate_after_s=0.0)
    sup.reset(info())
    q = {"q1": 1, "q2": 1}
    for t in (10.0, 20.0):
        cmds = sup.decide((Event(t, "fault", "m2", "jam"),), obs(t, RUN, q, {"m2": ["jam"]}))
        assert not [c for c in cmds if isinstance(c, PackMLCommand)]
    cmds = sup.decide((Event(30.0, "fault", "m2", "jam"),), obs(30.0, RUN, q, {"m2": ["jam"]}))
    stops = [(c.unit, c.command) for c in cmds if isinstance(c, PackMLCommand)]
    assert stops == [("m2", "Stop"), ("src", "Stop"), ("m1", "Stop")]
    assert all("faulted 3 times in 100 s" in c.reason for c in cmds
               if isinstance(c, PackMLCommand))
    assert WakeUp(530.0, "lockout:m2", "end of lockout of m2") in cmds
    # stopped units are not reset while the lockout lasts
    stopped = {"m1": State.STOPPED, "m2": State.STOPPED}
    ev = (Event(40.0, "state", "m1", "Stopped"), Event(40.0, "repaired", "m2", "jam"))
    assert [c for c in sup.decide(ev, obs(40.0, stopped, q)) if isinstance(c, PackMLCommand)
            ] == []
    # end of the lockout: everything restarts, nearest first
    cmds = sup.decide((Event(530.0, "timer", "plant", "lockout:m2"),), obs(530.0, stopped, q))
    got = [(c.unit, c.command) for c in cmds if isinstance(c, PackMLCommand)]
    assert ("src", "Start") in got and ("m1", "Reset") in got and ("m2", "Reset") in got


# --- containment policy on hand-made quality records ------------------------------------------
class _Rec:
    """A stand-in for darkfab.agents.quality.LotRecord."""

    def __init__(self, lot, raw: dict[str, float], t: float, oos: int = 0) -> None:
        self.lot, self.line, self.units, self.mass_kg = lot, "cdc", 1, 7.5
        self.raw_kg = {r: x * 7.5 for r, x in raw.items()}
        self.peak, self.latest = dict(raw), dict(raw)
        self.last_seen = {r: t for r in raw}
        self.assayed, self.out_of_spec, self.cmin, self.cmax = 1, oos, 0.99, 1.01


class _Records:
    def __init__(self, *recs: _Rec) -> None:
        self.lots = {r.lot: r for r in recs}
        self.by_raw: dict[str, dict[str, float]] = {}
        self.last_seen: dict[str, float] = {}
        for r in recs:
            for raw, x in r.peak.items():
                self.by_raw.setdefault(raw, {})[r.lot] = x

    def disposition(self, lot):
        return "open"


def test_containment_quarantines_then_diverts_or_releases():
    from darkfab.control import Divert, Quarantine, Release
    from darkfab.control.containment import ContainmentPolicy
    from darkfab.control.observation import LotView
    pol = ContainmentPolicy(min_fraction=1e-3, hold_s=100.0)
    pol.reset()
    recs = _Records(_Rec("B1", {"api-1": 0.05, "exc-1": 0.9}, 10.0),
                    _Rec("B2", {"api-1": 0.0005, "exc-2": 0.9}, 10.0),  # a trace only
                    _Rec("B3", {"api-2": 0.05}, 10.0))
    o = Observation(20.0, lots=LotView(recs))
    cmds = pol.decide((Event(20.0, "quality", "cdc", "api-1"),), o)
    assert [type(c) for c in cmds] == [Quarantine, WakeUp]
    assert cmds[0].lot == "B1" and "api-1" in cmds[0].reason and cmds[1].at_s == 120.0
    # a new unit of B3 takes in the suspect lot: B3 is quarantined too
    recs.lots["B3"].latest = {"api-1": 0.02}
    recs.lots["B3"].last_seen["api-1"] = 50.0
    cmds = pol.decide((Event(50.0, "lot", "B3", "cdc"),), Observation(50.0, lots=LotView(recs)))
    assert [(type(c), c.lot) for c in cmds if not isinstance(c, WakeUp)] == [(Quarantine, "B3")]
    # B3 fails an assay: diverted at once; B1 released at its hold time (the timer)
    recs.lots["B3"].out_of_spec = 1
    cmds = pol.decide((Event(60.0, "lot", "B3", "cdc"),), Observation(60.0, lots=LotView(recs)))
    assert [(type(c), c.lot) for c in cmds if not isinstance(c, WakeUp)] == [(Divert, "B3")]
    cmds = pol.decide((Event(120.0, "timer", "plant", "containment"),),
                      Observation(120.0, lots=LotView(recs)))
    assert [(type(c), c.lot) for c in cmds] == [(Release, "B1")]
    assert "all in spec" in cmds[0].reason
