"""Feeder refills planned by the supervisor (``refill_request = "controller"``) against the
fleet's kanban, on ``cdc-line``."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.cli import main

FEEDERS = ("api", "excipient", "lubricant")


def overrides(mode: str, days: float = 2.0, controller: str | None = None) -> list[str]:
    out = [f"continuous_lines.cdc.feeders.{f}.refill_request={mode}" for f in FEEDERS]
    out += [f"scenario.horizon_s={days * 86400}"]
    if controller:
        out.append(f"controller.name={controller}")
    return out


def line_events(out, prefix: str) -> list[dict]:
    ev = pq.read_table(out / "events.parquet", columns=["time_s", "kind", "entity", "detail"])
    return [e for e in ev.to_pylist() if e["kind"] == "line" and e["detail"].startswith(prefix)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refill")
    return {m: run_scenario(load_scenario("cdc-line", overrides(m)), out_dir=tmp / m)
            for m in ("kanban", "controller")}


def test_planned_refills_keep_the_line_fed_with_less_material_waiting(runs):
    plan, kanban = runs["controller"], runs["kanban"]
    assert plan.verification["violations"] == []
    assert line_events(plan.out_dir, "Suspended") == []  # no hopper ran empty
    lp = plan.summary["continuous_lines"]["cdc"]
    lk = kanban.summary["continuous_lines"]["cdc"]
    for f in FEEDERS:  # the same refills, requested by the supervisor instead of kanban
        assert abs(lp["refills"][f] - lk["refills"][f]) <= 1
        dock = f"{f}_dock"
        assert plan.summary["buffers"][dock]["level_mean"] < \
            0.8 * kanban.summary["buffers"][dock]["level_mean"]
    assert plan.summary["controller"]["transport_requests"] >= sum(lp["refills"].values())
    assert kanban.summary["controller"]["transport_requests"] == 0


def test_a_controller_that_never_asks_starves_the_line_at_the_mass_balance_time(tmp_path):
    """do-nothing requests no container: each hopper, full at its high level M0, empties at
    M0 / F (gravimetric control holds the mass flow F at its set-point; the AR(1) feed noise
    moves the time by well under 1 %): API 6 kg / (0.10 × 54 kg/h) = 4000 s, excipient
    26 kg / (0.89 × 54 kg/h) = 1948 s, lubricant 1 kg / (0.01 × 54 kg/h) = 6667 s. The
    excipient runs out first."""
    res = run_scenario(load_scenario("cdc-line", overrides("controller", 0.25, "do-nothing")
                                     + ["scenario.warmup_s=0"]), out_dir=tmp_path / "none")
    stops = line_events(res.out_dir, "Suspended")
    assert stops, "the line should stop when a hopper runs empty"
    first = stops[0]
    assert first["detail"] == "Suspended: excipient empty"
    assert first["time_s"] == pytest.approx(26.0 / (0.89 * 54.0 / 3600.0), rel=0.01)


def test_kanban_transports_cannot_be_requested(tmp_path, controller_module):
    controller_module("ask", """
from darkfab.control import AutoRecoverySupervisor, TransportRequest
class Ask(AutoRecoverySupervisor):
    name = "ask"
    def decide(self, events, observation):
        out = super().decide(events, observation)
        if any(e.kind == "start" for e in events):
            out.append(TransportRequest("api_store", "api_dock", 1))
        return out
""")
    s = load_scenario("cdc-line", ["scenario.horizon_s=3600", "scenario.warmup_s=0",
                                   "controller.name=ask:Ask"])
    res = run_scenario(s, out_dir=tmp_path / "ask", allow_code=True)
    ev = pq.read_table(res.out_dir / "events.parquet", columns=["kind", "detail"]).to_pylist()
    assert any(e["kind"] == "command_rejected" and "on their own (kanban)" in e["detail"]
               for e in ev)


def test_controller_refills_need_robots_to_the_dock(capsys):
    """With the API store next to its dock (no robot hop), there is nothing to request."""
    code = main(["run", "cdc-line", "--set", "sources.api_store.node=feeder_deck", "--set",
                 "continuous_lines.cdc.feeders.api.refill_request=controller"])
    err = capsys.readouterr().err
    assert code == 2
    assert "continuous_lines.cdc.feeders.api.refill_request: controller-requested refills " \
        "need robots carrying containers to 'api_dock'" in err
    assert "Traceback" not in err
