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
