"""The built-in supervisor's line strategies on hand-built observations: the rate cut before a
feeder starves (control/line_rate.py), the hold on a persisting critical alarm
(control/line_alarms.py) and the refill stagger (control/refill.py). Expected values are
computed by hand from the hopper mass balance."""

from __future__ import annotations

from types import MappingProxyType as MP

import pytest

from darkfab.control import (Acknowledge, AlarmObs, AutoRecoverySupervisor, EquipmentInfo,
                             EquipmentObs, Event, FeederInfo, FeederObs, Observation, PackMLCommand,
                             PlantInfo, SetPoint, WakeUp)
from darkfab.control.line_alarms import CriticalAlarmHold
from darkfab.control.line_rate import FeederRateCut, LeadTimes
from darkfab.control.observation import Reading, SetPointInfo
from darkfab.control.refill import RefillPlanner
from darkfab.factory.packml import State

RATE = 54.0
UNITS = ("cdc", "cdc.exc", "cdc.api", "cdc.press", "cdc.pat")


def info(request: str = "kanban") -> PlantInfo:
    eq = {u: EquipmentInfo(u, "", 1, (), ()) for u in UNITS}
    feeders = {f"cdc.{n}": FeederInfo(f"cdc.{n}", "cdc", f"{n}_dock", f"{n}_store", kg, request)
               for n, kg in (("exc", 20.0), ("api", 4.5))}
    sp = {"cdc": MP({"line_rate_kg_h": SetPointInfo("line_rate_kg_h", "kg/h", 16.2, 59.4)})}
    return PlantInfo(MP(eq), (), (), (), 86400.0, 0.0, feeders=MP(feeders), setpoints=MP(sp))


def feeder(name: str, mass: float, low: float, kg_h: float, dock: int = 0, coming: int = 0,
           mode: str = "gravimetric") -> FeederObs:
    return FeederObs(name, mass, low, 4 * low, kg_h / 3600.0, mode, dock, coming)


def obs(t: float, feeders: list[FeederObs], rate: float = RATE, press: State = State.EXECUTE,
        alarms: tuple[AlarmObs, ...] = ()) -> Observation:
    def eq(u, state=State.EXECUTE, values=None):
        return EquipmentObs(u, state, "Production", "producing", None, (), 0, 0, 0,
                            MP({k: Reading(v, unit, t) for k, (v, unit) in (values or {}).items()}))
    e = {u: eq(u) for u in UNITS}
    e["cdc"] = eq("cdc", values={"line_rate_kg_h": (rate, "kg/h")})
    e["cdc.press"] = eq("cdc.press", press)
    for f in feeders:
        e[f.name] = eq(f.name, values={"setpoint_kg_h": (f.feed_rate_kg_s * 3600.0, "kg/h")})
    return Observation(t, MP(e), feeders=MP({f.name: f for f in feeders}),
                       alarms=MP({a.id: a for a in alarms}))


# --- lead times -------------------------------------------------------------------------------
def test_lead_times_from_first_seen_coming_to_first_seen_at_the_dock():
    lt = LeadTimes(prior_s=900.0, quantile=0.5, history=20)
    assert lt.estimate("f") == 900.0  # nothing observed: the prior
    lt.observe(100.0, feeder("f", 10.0, 2.0, 36.0, coming=1))
    assert lt.remaining(400.0, feeder("f", 7.0, 2.0, 36.0, coming=1), 600.0) == 900.0 - 300.0
    lt.observe(400.0, feeder("f", 7.0, 2.0, 36.0, dock=1))
    assert lt.estimate("f") == 300.0
    # a container emptied into the hopper between two observations: the mass rose; it was
    # there by the time the hopper reached its low level, 0 + (3 − 2) / (36 kg/h) = 100 s
    lt.observe(0.0, feeder("g", 3.0, 2.0, 36.0, coming=1))
    lt.observe(500.0, feeder("g", 9.0, 2.0, 36.0))
    assert lt.samples["g"][-1] == pytest.approx(100.0)
    # with fewer than 3 of its own, a feeder's estimate pools every feeder's delays
    assert lt.estimate("g") == pytest.approx(200.0)  # median of 300 and 100


def test_an_overdue_container_gets_the_mean_excess_of_longer_delays():
    lt = LeadTimes(prior_s=900.0, quantile=0.5, history=20)
    for t0, d in ((0.0, 100.0), (1000.0, 200.0), (2000.0, 600.0)):
        lt.observe(t0, feeder("f", 10.0, 2.0, 36.0, coming=1))
        lt.observe(t0 + d, feeder("f", 10.0, 2.0, 36.0, dock=1))
    lt.observe(5000.0, feeder("f", 10.0, 2.0, 36.0, coming=1))
    assert lt.estimate("f") == 200.0
    assert lt.remaining(5300.0, feeder("f", 9.0, 2.0, 36.0, coming=1), 600.0) == 300.0
    assert lt.remaining(5700.0, feeder("f", 9.0, 2.0, 36.0, coming=1), 600.0) == 600.0


# --- rate cut ---------------------------------------------------------------------------------
def cut(reserve_used: float = 0.0) -> FeederRateCut:
    c = FeederRateCut(margin_s=300.0, prior_lead_s=900.0, reserve_used=reserve_used)
    c.reset(info())
    return c


def setpoints(cmds):
    return [c for c in cmds if isinstance(c, SetPoint)]


def test_rate_cut_makes_the_hopper_last_until_the_container_can_come():
    """Excipient at 48 kg/h, 16 kg with the low level at 6: the low level in 10 kg /
    (48 kg/h) = 750 s, but a container needs the 900 s lead + 300 s margin = 1200 s: the line
    goes to 54 × 750 / 1200 = 33.75 kg/h, where the 10 kg last exactly 1200 s."""
    c = cut()
    out = c.decide([], obs(0.0, [feeder("cdc.exc", 16.0, 6.0, 48.0, coming=1),
                                 feeder("cdc.api", 6.0, 1.5, 5.4, dock=1)]))
    (sp,) = setpoints(out)
    assert (sp.unit, sp.name) == ("cdc", "line_rate_kg_h")
    assert sp.value == pytest.approx(RATE * 750.0 / 1200.0)
    assert 10.0 / (48.0 * sp.value / RATE / 3600.0) == pytest.approx(1200.0)
    assert any(isinstance(w, WakeUp) for w in out)
    # 100 s later at the cut rate (30 kg/h of excipient): 16 − 30 × 100/3600 kg, low level in
    # 1100 s, the container due in 800 s + 300 s margin: no new set-point
    f = feeder("cdc.exc", 16.0 - 30.0 / 36.0, 6.0, 48.0 * sp.value / RATE, coming=1)
    assert setpoints(c.decide([], obs(100.0, [f, feeder("cdc.api", 6.0, 1.5, 5.4, dock=1)],
                                     rate=sp.value))) == []
    # the container is at the dock: back to the nominal rate
    f = feeder("cdc.exc", 14.0, 6.0, 48.0 * sp.value / RATE, dock=1)
    (back,) = setpoints(c.decide([], obs(400.0, [f, feeder("cdc.api", 6.0, 1.5, 5.4, dock=1)],
                                         rate=sp.value)))
    assert back.value == RATE and "restored" in back.reason


def test_no_cut_while_the_hopper_lasts_and_a_look_when_it_would_not():
    """26 kg: the low level in 20 kg / (48 kg/h) = 1500 s ≥ 1200 s: no cut; with nothing coming
    the slack shrinks as time passes, so it looks again in 1500 − 1200 = 300 s."""
    c = cut()
    out = c.decide([], obs(0.0, [feeder("cdc.exc", 26.0, 6.0, 48.0),
                                 feeder("cdc.api", 6.0, 1.5, 5.4, dock=1)]))
    assert setpoints(out) == []
    (w,) = [x for x in out if isinstance(x, WakeUp)]
    assert w.at_s == pytest.approx(300.0)


def test_the_cut_stays_within_the_set_point_range_and_may_use_the_reserve():
    c = cut()
    (sp,) = setpoints(c.decide([], obs(0.0, [feeder("cdc.exc", 7.0, 6.0, 48.0)])))
    assert sp.value == 16.2  # 54 × 75/1200 = 3.4 kg/h is below the range: its low end
    c = cut(reserve_used=0.5)  # may count on 3 of the 6 kg below the low level
    (sp,) = setpoints(c.decide([], obs(0.0, [feeder("cdc.exc", 14.0, 6.0, 48.0)])))
    assert sp.value == pytest.approx(RATE * (11.0 / (48.0 / 3600.0)) / 1200.0)


# --- critical alarm hold ----------------------------------------------------------------------
def crit(t: float, i: int = 7, source: str = "cdc.pat", priority: str = "critical") -> AlarmObs:
    return AlarmObs(i, source, "api_content_oos", priority, "NIR out of spec", t, False)


def holder(**kw) -> CriticalAlarmHold:
    h = CriticalAlarmHold(**kw)
    h.reset(info())
    return h


def test_hold_only_when_the_critical_alarm_persists_then_unhold_when_it_clears():
    h = holder(hold_after_s=900.0)
    out = h.decide([], obs(10.0, [], alarms=(crit(10.0),)))
    assert [type(c) for c in out] == [WakeUp] and out[0].at_s == 910.0
    assert h.decide([], obs(500.0, [], alarms=(crit(10.0),))) == []  # not yet
    out = h.decide([], obs(910.0, [], alarms=(crit(10.0),)))
    hold = [c for c in out if isinstance(c, PackMLCommand)]
    assert [(c.unit, c.command.value) for c in hold] == [("cdc.press", "Hold")]
    assert "critical alarm 7 api_content_oos" in hold[0].reason and "900 s" in hold[0].reason
    assert [c.alarm_id for c in out if isinstance(c, Acknowledge)] == [7]
    assert h.decide([], obs(1000.0, [], press=State.HELD, alarms=(crit(10.0),))) == []
    (un, w) = h.decide([], obs(1200.0, [], press=State.HELD))  # cleared
    assert un.command.value == "Unhold" and "no critical alarm" in un.reason
    # refused (a repair under way): the press is still Held; sent again 600 s later
    assert h.decide([], obs(1300.0, [], press=State.HELD)) == []
    assert w.at_s == 1800.0
    (again, _) = h.decide([], obs(1800.0, [], press=State.HELD))
    assert again.command.value == "Unhold"
    assert h.decide([], obs(1900.0, [])) == []  # back in Execute: done
    assert h.decide([], obs(2500.0, [])) == []


def test_alarms_that_follow_each_other_make_one_critical_period():
    """The line clears an NIR alarm and raises the next at one scan: the period goes on."""
    h = holder(hold_after_s=900.0)
    h.decide([], obs(0.0, [], alarms=(crit(0.0, 1),)))
    assert h.decide([], obs(600.0, [], alarms=(crit(600.0, 2),))) == []
    out = h.decide([], obs(900.0, [], alarms=(crit(600.0, 2),)))
    assert [c.command.value for c in out if isinstance(c, PackMLCommand)] == ["Hold"]


def test_a_short_alarm_holds_nothing_and_other_alarms_are_ignored():
    h = holder(hold_after_s=900.0)
    h.decide([], obs(10.0, [], alarms=(crit(10.0), crit(10.0, 8, "cdc.press", "high"),
                                       crit(10.0, 9, "amr-1"))))
    assert h.decide([], obs(910.0, [], alarms=(crit(10.0, 8, "cdc.press", "high"),))) == []


def test_a_hold_ends_after_max_hold_s_and_is_not_repeated_for_the_same_alarm():
    h = holder(hold_after_s=0.0, max_hold_s=1800.0)
    out = h.decide([], obs(0.0, [], alarms=(crit(0.0),)))
    assert any(isinstance(c, PackMLCommand) and c.command.value == "Hold" for c in out)
    (un, _) = h.decide([], obs(1800.0, [], press=State.HELD, alarms=(crit(0.0),)))
    assert un.command.value == "Unhold" and "no second hold" in un.reason
    assert h.decide([], obs(2000.0, [], alarms=(crit(0.0),))) == []
    assert h.holds == 1


def test_acknowledge_all_and_bad_parameters():
    h = holder(acknowledge="all", hold=False)
    out = h.decide([], obs(0.0, [], alarms=(crit(0.0), crit(0.0, 8, "amr-1", "medium"))))
    assert sorted(c.alarm_id for c in out) == [7, 8]
    assert h.decide([], obs(1.0, [], alarms=(crit(0.0),))) == []  # sent once
    with pytest.raises(ValueError):
        CriticalAlarmHold(acknowledge="some")
    with pytest.raises(ValueError):
        AutoRecoverySupervisor(critical_hold_max_s=0.0)
    with pytest.raises(ValueError):
        AutoRecoverySupervisor(rate_cut_reserve_used=2.0)


# --- refill stagger ---------------------------------------------------------------------------
def test_stagger_defers_the_feeder_with_the_longer_reserve_clear_of_the_other():
    """Excipient (48 kg/h, 6 kg below low: 450 s reserve) reaches its low level at 1200 s; the
    API (5.4 kg/h, 1.5 kg: 1000 s reserve) at 1100 s, within the 300 s window: the API is
    deferred to a tenth into [1200 + 300, 1100 + 1000 − 300] = [1500, 1800]: 1530 s."""
    p = RefillPlanner(lead_s=900.0, margin_s=300.0, stagger=True, window_s=300.0)
    p.reset(info("controller"))
    exc = feeder("cdc.exc", 6.0 + 48.0 / 3.0, 6.0, 48.0)
    api = feeder("cdc.api", 1.5 + 5.4 * 1100.0 / 3600.0, 1.5, 5.4)
    o = obs(0.0, [exc, api])
    assert p.stagger_target("cdc.api", o) == pytest.approx(1530.0)
    assert p.stagger_target("cdc.exc", o) is None  # the API gives way
    out = p.decide([Event(0.0, "start", "plant")], o)  # both due: only the excipient asked
    assert [c.destination for c in out if not isinstance(c, WakeUp)] == ["exc_dock"]
    assert p.deferred == {"cdc.api": pytest.approx(1530.0)}
    # it looks again at the recheck (600 s), before the API's request at 1530 − 900 = 630 s
    assert [w.at_s for w in out if isinstance(w, WakeUp)] == [600.0]
