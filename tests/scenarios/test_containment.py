"""Fault recovery and containment (issue #5): lot commands at the product sinks, genealogy-based
quarantine of a continuous line's output lots, the watchdog on stalled work, and the built-in
supervisor's escalation (a controlled shutdown upstream, resumed after the repair)."""

from __future__ import annotations

import textwrap
from collections import defaultdict

import pyarrow.parquet as pq
import pytest

from darkfab.scenarios.cli import main

from darkfab.control import Divert, PackMLCommand, Quarantine, Release
from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.builder import build_plant

H = 3600.0


def discrete(tmp_path, body: str, controller: str = 'name = "auto-recovery"',
             horizon: float = 1000.0, faults: str = ""):
    """A source of one unit per lot every 10 s (``max_units``, ``body`` adds the rest)."""
    text = textwrap.dedent(f"""
        [scenario]
        name = "contain"
        horizon_s = {horizon}
        warmup_s = 0.0
        seed = 3
        [products.a]
        [products.b]
        [nodes.n]
        x_m = 0.0
        y_m = 0.0
        [sinks.out]
        node = "n"
        [controller]
        {controller}
        """) + textwrap.dedent(body) + faults
    p = tmp_path / "contain.toml"
    p.write_text(text)
    return load_scenario(p)


ONE_UNIT = """
    [sources.src]
    node = "n"
    to = "q1"
    product = "a"
    interarrival = { dist = "constant", value_s = 10.0 }
    [buffers.q1]
    node = "n"
    [equipment.m1]
    node = "n"
    input = "q1"
    process_time = { dist = "constant", value_s = 5.0 }
    output = { product = "b", units = 1 }
    next = "out"
    """


def test_lot_commands_applied_and_rejected(tmp_path):
    """Quarantine holds a lot's units at the product sink (not completed) until Release
    (completed then) or Divert (scrapped with the reason); a lot diverted before its units
    arrive is scrapped on arrival; unknown lots, double quarantines and releases of lots not
    quarantined are rejected with the reason; a source takes Stop and Start."""
    s = discrete(tmp_path, ONE_UNIT)
    out = tmp_path / "o"
    out.mkdir()
    plant = build_plant(s, 3, 0, out, "t")
    plant.start()
    env, loop = plant.model.env, plant.control
    env.run(until=42.0)  # lots src-000001..4 made at 10..40; each unit leaves 5 s later
    assert loop.apply(Quarantine("src-000004", "suspect"))
    assert not loop.apply(Quarantine("src-000004"))
    assert not loop.apply(Release("src-000003"))
    assert not loop.apply(Quarantine("nope-000001"))
    assert not loop.apply(Divert("src-000099"))
    env.run(until=52.0)
    assert loop.apply(Divert("src-000005", "bad lot"))  # in m1 now: scrapped on arrival
    env.run(until=60.0)
    assert loop.apply(Release("src-000004", "in spec"))
    assert not loop.apply(Release("src-000004"))
    env.run(until=62.0)
    assert loop.apply(Quarantine("src-000006"))
    env.run(until=70.0)
    assert loop.apply(Divert("src-000006", "failed"))
    assert not loop.apply(Release("src-000006"))
    assert loop.apply(PackMLCommand("src", "Stop", "escalation test"))
    assert not loop.apply(PackMLCommand("src", "Stop"))
    env.run(until=100.0)
    assert loop.apply(PackMLCommand("src", "Start"))
    env.run(until=120.0)
    c = plant.containment.summary()
    plant.model.finish(env.now)
    ev = pq.read_table(out / "events.parquet").to_pandas()
    made = ev[ev.kind == "produce"].set_index("detail").unit_id  # lot -> unit id (1 per lot)
    fate = {lot: ev[ev.unit_id == made[lot]].query("kind in ['complete', 'scrap', 'quarantine']")
            [["time_s", "kind", "detail"]].values.tolist() for lot in made.index}
    assert fate["src-000003"] == [[35.0, "complete", "m1"]]
    assert fate["src-000004"] == [[45.0, "quarantine", "src-000004 (from m1)"],
                                  [60.0, "complete", "m1; released src-000004"]]
    assert fate["src-000005"] == [[55.0, "scrap", "divert src-000005: bad lot"]]
    assert fate["src-000006"] == [[65.0, "quarantine", "src-000006 (from m1)"],
                                  [70.0, "scrap", "divert src-000006: failed"]]
    cmds = ev[ev.kind == "command"]
    assert cmds[cmds.entity == "src-000004"].detail.tolist() == ["Quarantine: suspect",
                                                                  "Release: in spec"]
    # the audit trail: the disposition first, then the units it completes or scraps
    rel = cmds[cmds.detail == "Release: in spec"].index[0]
    done = ev[(ev.unit_id == made["src-000004"]) & (ev.kind == "complete")].index[0]
    assert rel < done
    rej = ev[ev.kind == "command_rejected"].detail.tolist()
    for part in ("Quarantine: lot src-000004 is already quarantined",
                 "Release: lot src-000003 is not quarantined", "Quarantine: unknown lot "
                 "'nope-000001'", "Divert: unknown lot 'src-000099'",
                 "Release: lot src-000004 is not quarantined",
                 "Release: lot src-000006 is not quarantined", "PackMLCommand: a source takes"):
        assert any(part in r for r in rej), (part, rej)
    assert cmds[cmds.entity == "src"].detail.tolist() == ["Stop: escalation test", "Start"]
    created = ev[(ev.kind == "create")].time_s.tolist()
    assert not [t for t in created if 70.0 < t < 100.0]  # the source was stopped
    assert any(t > 100.0 for t in created)
    assert c["units_quarantined"] == 2 and c["units_released"] == 1
    assert c["units_diverted"] == 2 and c["lots_diverted"] == 2 and c["units_held_at_end"] == 0
    assert plant.model.units_completed == len(ev[ev.kind == "complete"])


WATCHDOG = """
    [sources.src]
    node = "n"
    to = "q1"
    product = "a"
    interarrival = { dist = "constant", value_s = 10.0 }
    max_units = 3
    [buffers.q1]
    node = "n"
    [equipment.m1]
    node = "n"
    input = "q1"
    process_time = { dist = "constant", value_s = 5.0 }
    next = "out"
    [[equipment.m1.failures]]
    name = "jam"
    time_to_failure = { dist = "constant", value_s = 12.0 }
    repair_time = { dist = "constant", value_s = 500.0 }
    """


def test_watchdog_fires_once_per_stall_at_the_right_time(tmp_path):
    """Units arrive at 10, 20, 30 s and take 5 s; the jam strikes after 12 s in Execute (t = 32,
    2 s into the third unit) and is repaired 500 s later; the unit finishes at 535 and starves.
    With watchdog_s = 100: Held from 32 -> 132; no completion after 535 -> 635. Once each."""
    s = discrete(tmp_path, WATCHDOG, 'name = "auto-recovery"\nwatchdog_s = 100.0')
    res = run_scenario(s, out_dir=tmp_path / "o")
    ev = pq.read_table(res.out_dir / "events.parquet").to_pandas()
    assert ev[ev.kind == "fault"].time_s.tolist() == [32.0]
    wd = ev[ev.kind == "watchdog"]
    assert wd.time_s.tolist() == pytest.approx([132.0, 635.0], abs=1e-9)
    assert wd.detail.tolist() == ["Held 100 s", "Suspended 100 s"]
    assert res.summary["controller"]["watchdog_events"] == 2
    # nothing to retry: the unit is starved, not stuck
    assert not ev[(ev.kind == "command") & (ev.time_s > 535.0)].detail.str.startswith(
        "Stop").any()
    off = discrete(tmp_path, WATCHDOG, 'name = "auto-recovery"\nwatchdog_s = 0.0')
    res = run_scenario(off, out_dir=tmp_path / "off")
    ev = pq.read_table(res.out_dir / "events.parquet").to_pandas()
    assert not (ev.kind == "watchdog").any()


LINE = """
    [sources.src]
    node = "n"
    to = "q1"
    product = "a"
    interarrival = { dist = "constant", value_s = 10.0 }
    [buffers.q1]
    node = "n"
    capacity_units = 5
    [buffers.q2]
    node = "n"
    capacity_units = 5
    [buffers.q3]
    node = "n"
    capacity_units = 5
    [equipment.m1]
    node = "n"
    input = "q1"
    process_time = { dist = "constant", value_s = 8.0 }
    next = "q2"
    [equipment.m2]
    node = "n"
    input = "q2"
    process_time = { dist = "constant", value_s = 8.0 }
    next = "q3"
    [equipment.m3]
    node = "n"
    input = "q3"
    process_time = { dist = "constant", value_s = 8.0 }
    next = "out"
    """


def test_escalation_stops_upstream_and_resumes_after_repair(tmp_path):
    """m3 breaks down at 1000 s for 5000 s; with escalate_after_s = 2000 the supervisor stops
    the source, m1 and m2 at 3000 s (farthest first, with the reason) and keeps them stopped;
    after the repair at 6000 s it starts the source and resets and starts m2 and m1."""
    faults = textwrap.dedent("""
        [[faults]]
        mode = "breakdown"
        time_s = 1000.0
        target = "m3"
        duration_s = 5000.0
        """)
    s = discrete(tmp_path, LINE, 'name = "auto-recovery"\n'
                 'params = { escalate_after_s = 2000.0 }\nwatchdog_s = 0.0', horizon=9000.0,
                 faults=faults)
    res = run_scenario(s, out_dir=tmp_path / "o")
    ev = pq.read_table(res.out_dir / "events.parquet").to_pandas()
    sup = ev[(ev.kind == "command") & (ev.location == "auto-recovery")]
    stops = sup[sup.detail.str.startswith("Stop")]
    assert stops.time_s.tolist() == [3000.0] * 3
    assert stops.entity.tolist() == ["src", "m1", "m2"]  # farthest upstream first
    assert stops.detail.str.contains("escalation: m3 down 2000 s with no repair").all()
    st = ev[ev.kind == "state"]
    for u in ("m1", "m2"):
        mine = st[st.entity == u]
        during = mine[(mine.time_s >= 3000.0) & (mine.time_s < 6000.0)].detail.tolist()
        assert during[-1] == "Stopped" and "Execute" not in during
        assert "Execute" in mine[mine.time_s >= 6000.0].detail.tolist()
    assert not ev[(ev.kind == "create") & (ev.time_s > 3000.0) & (ev.time_s < 6000.0)].shape[0]
    after = sup[sup.time_s == 6000.0]
    assert after[after.entity == "src"].detail.tolist() == ["Start: escalation over: m3 "
                                                             "repaired"]
    assert set(after.entity) >= {"src", "m1", "m2", "m3"}  # m3: Unhold, m1/m2: Reset
    assert res.verification["checks"]["unsafe_commands"]["unsafe"] == 0


def test_cdc_quarantine_through_genealogy(tmp_path):
    """A low-potency API lot on a cdc-line whose PAT is nearly blind: the at-line assays find
    the out-of-spec units, the supervisor quarantines every output lot that genealogy.parquet
    shows containing a suspect raw-material lot (computed here independently), diverts the lots
    with failed assays and releases the others; no unit of a diverted lot is completed, and the
    out-of-spec material the line accepted is all in diverted lots."""
    s = load_scenario("cdc-line", [
        f"scenario.horizon_s={12 * H}", "scenario.warmup_s=0",
        "continuous_lines.cdc.batch_hours=2.0",
        "continuous_lines.cdc.pat.dropout_probability=0.98",
        f'faults=[{{mode="oos_raw_material_lot", time_s={4 * H}, target="cdc.api", '
        'potency=0.6}]'])
    res = run_scenario(s, out_dir=tmp_path / "o")
    out = res.out_dir
    ev = pq.read_table(out / "events.parquet").to_pandas()
    gen = pq.read_table(out / "genealogy.parquet").to_pandas()
    (fault,) = res.verification["checks"]["faults"]["faults"]
    suspects = set(ev[ev.kind == "quality"].detail.str.extract(r"^suspect (\S+):")[0])
    assert fault["lot"] in suspects
    # independently: output lots (batch ids on the totes' create rows) of totes with a suspect
    # lot above the supervisor's threshold (quarantine_min_fraction, default 1e-3)
    lot_of = dict(zip(ev[ev.kind == "create"].unit_id, ev[ev.kind == "create"].detail))
    hit = gen[gen.parent_lot.isin(suspects) & (gen.mass_fraction > 1e-3)]
    affected = {lot_of[u] for u in hit.child_id}
    cmds = ev[(ev.kind == "command") & ev.entity.str.startswith("cdc-batch")]
    quarantined = set(cmds[cmds.detail.str.startswith("Quarantine")].entity)
    assert quarantined == affected
    released = set(cmds[cmds.detail.str.startswith("Release")].entity)
    diverted = set(cmds[cmds.detail.str.startswith("Divert")].entity)
    assert diverted and released and not diverted & released
    assert diverted | released == quarantined  # every quarantine ended in a verdict
    assert cmds.detail.str.contains(": ").all()  # each with its reason
    # units of diverted lots: descendants of their totes are never completed after the divert
    kids = defaultdict(list)
    for c, p in zip(gen.child_id, gen.parent_id):
        if p >= 0:
            kids[p].append(c)
    for lot in diverted:
        t_div = cmds[(cmds.entity == lot) & cmds.detail.str.startswith("Divert")].time_s.min()
        stack = [u for u, x in lot_of.items() if x == lot]
        desc = set(stack)
        while stack:
            for c in kids[stack.pop()]:
                if c not in desc:
                    desc.add(c)
                    stack.append(c)
        done = ev[ev.unit_id.isin(desc) & (ev.kind == "complete")]
        assert (done.time_s < t_div).all()
        assays = ev[(ev.kind == "assay") & (ev.location == lot)]
        assert len(assays) and (assays.time_s >= t_div).all()  # diverted on the first one
    line = res.summary["continuous_lines"]["cdc"]
    c = res.summary["containment"]
    assert line["released_out_of_spec_kg"] > 0  # the line accepted out-of-spec material ...
    assert c["out_of_spec_kg_contained"]["cdc"] == pytest.approx(
        line["released_out_of_spec_kg"])  # ... all of it in diverted lots
    assert res.verification["checks"]["out_of_spec_released"]["violations"] == []
    assert c["units_diverted"] > 0 and c["units_held_at_end"] == 0


def test_bad_watchdog_is_a_scenario_error(tmp_path, capsys):
    discrete(tmp_path, ONE_UNIT, 'name = "auto-recovery"\nwatchdog_s = 1.0')  # valid
    p = tmp_path / "contain.toml"
    p.write_text(p.read_text().replace("watchdog_s = 1.0", "watchdog_s = -5.0"))
    assert main(["check", str(p)]) == 2
    err = capsys.readouterr().err
    assert "controller.watchdog_s" in err
