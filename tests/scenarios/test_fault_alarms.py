"""Every fault injected by the 30-day fault campaign reaches the controller as an alarm event
and is a record of alarms.parquet (issue 14: alarms after ISA-18.2)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from darkfab.control import AutoRecoverySupervisor
from darkfab.scenarios import load_scenario, run_scenario


class AlarmRecorder(AutoRecoverySupervisor):
    """The built-in supervisor, also woken by alarms: records what it learns of each alarm as
    (how, source, condition, time raised): an ``alarm`` event, an ``alarm_cleared`` event, or
    the alarm list it finds when it comes back after an outage (events in between are lost)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.wakes_on = self.wakes_on | {"alarm", "alarm_cleared", "start"}
        self.heard: list[tuple[str, str, str, float]] = []

    def decide(self, events, obs):
        for e in events:
            if e.kind == "alarm":
                self.heard.append(("alarm", e.source, e.detail.split(" ", 2)[1].rstrip(":"),
                                   e.time_s))
            elif e.kind == "alarm_cleared":
                self.heard.append(("alarm_cleared", e.source,
                                   e.detail.split(" ", 2)[1].rstrip(":"), e.time_s))
            elif e.kind == "start" and e.detail == "resume":
                self.heard += [("resume", a.source, a.condition, a.raised_s)
                               for a in obs.alarms.values()]
        return super().decide(events, obs)


#: the alarm (source, condition prefix) each fault mode must raise; ``*``: any source
EXPECTED = {
    "robot_stall": ("{target}", "stall#"),
    "charger_outage": ("{target}", "charger_fault"),
    "battery_fade": ("{target}", "battery_fade"),
    "sensor_dropout": ("cdc", "pat_signal_lost"),
    "sensor_drift": ("cdc.pat", "api_content_oos"),
    "feeder_refill_failure": ("{target}", "refill_failed"),
    "oos_raw_material_lot": ("cdc.pat", "api_content_oos"),
    "supervisor_outage": ("plant", "controller_offline"),
    "command_latency": ("plant", "command_latency"),
    "command_loss": ("*", "command_lost"),
}


def test_every_injected_fault_is_an_alarm_the_controller_hears(tmp_path):
    ctl = AlarmRecorder()
    s = load_scenario("fault-campaign")
    res = run_scenario(s, out_dir=tmp_path / "fc", controller=ctl)
    v = json.loads((res.out_dir / "verification.json").read_text())
    faults = [f for f in v["checks"]["faults"]["faults"] if f["status"] == "detected"]
    assert len(faults) == v["checks"]["faults"]["injected"] >= 15
    rows = pq.read_table(res.out_dir / "alarms.parquet").to_pylist()
    for f in faults:
        if f["mode"] == "breakdown":
            src = "cdc.press" if f["target"] == "cdc" else f["target"]
            want = (src, "breakdown#")
        else:
            want = EXPECTED[f["mode"]]
            want = (want[0].format(target=f["target"]), want[1])
        t0, t1 = f["detected_s"] - 1.0, (f["recovered_s"] or f["detected_s"]) + 60.0

        def match(source: str, condition: str, t: float) -> bool:
            return (want[0] in ("*", source) and condition.startswith(want[1])
                    and t0 <= t <= t1)
        assert any(match(r["source"], r["condition"], r["raised_s"]) for r in rows), f
        # the controller hears it: raised; or, offline when it was raised, in the alarm list
        # when it comes back, or cleared on its return (the outage's own alarm)
        heard = [h for h in ctl.heard if match(h[1], h[2], h[3])]
        assert heard, f
