"""Equipment behaviour on small deterministic lines: operating-time failures, hold and abort
recovery, changeovers, batches and genealogy, blocking, and command rejection."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkfab.factory.packml import Command, State
from darkfab.scenarios import load_scenario, run_scenario


def line(tmp_path: Path, *, horizon=2000.0, interarrival='{ dist = "constant", value_s = 20.0 }',
         process='{ dist = "constant", value_s = 10.0 }', extra_eq="", failures="",
         source_extra='product = "a"', products=("a",), cap2="", second=True,
         batch=1, output="") -> Path:
    prods = "\n".join(f"[products.{p}]" for p in products)
    m2 = textwrap.dedent(f"""
        [buffers.q2]
        node = "n"
        {cap2}
        [equipment.m2]
        node = "n"
        input = "q2"
        process_time = {{ dist = "constant", value_s = 30.0 }}
        next = "out"
        """) if second else ""
    text = textwrap.dedent(f"""
        [scenario]
        name = "t"
        horizon_s = {horizon}
        seed = 3
        {prods}
        [nodes.n]
        x_m = 0.0
        y_m = 0.0
        [sources.src]
        node = "n"
        to = "q1"
        {source_extra}
        interarrival = {interarrival}
        [buffers.q1]
        node = "n"
        [equipment.m1]
        node = "n"
        input = "q1"
        process_time = {process}
        batch_size_units = {batch}
        next = "{'q2' if second else 'out'}"
        {output}
        {extra_eq}
        {failures}
        {m2}
        [sinks.out]
        node = "n"
        [sinks.scrap]
        node = "n"
        kind = "scrap"
        """)
    p = tmp_path / "line.toml"
    p.write_text(text)
    return p


def events(res) -> list[dict]:
    return pq.read_table(res.out_dir / "events.parquet").to_pylist()


def execute_intervals(res, entity: str) -> list[tuple[float, float]]:
    rows = pq.read_table(res.out_dir / "states.parquet").to_pylist()
    return [(r["start_s"], r["end_s"]) for r in rows
            if r["entity"] == entity and r["state"] == "Execute"]


def test_time_to_failure_counts_operating_time_only(tmp_path):
    f = """
    [[equipment.m1.failures]]
    name = "jam"
    time_to_failure = { dist = "constant", value_s = 100.0 }
    repair_time = { dist = "constant", value_s = 15.0 }
    """
    res = run_scenario(load_scenario(line(tmp_path, failures=f, second=False)),
                       out_dir=tmp_path / "o")
    ev = events(res)
    faults = [e["time_s"] for e in ev if e["kind"] == "fault"]
    assert len(faults) >= 5
    ex = execute_intervals(res, "m1")
    # operating time (time in Execute) between consecutive faults is exactly the TTF
    prev = 0.0
    for t in faults:
        op = sum(max(0.0, min(b, t) - max(a, prev)) for a, b in ex)
        assert op == pytest.approx(100.0, abs=1e-6)
        prev = t
    # the machine is busy half the time, so calendar time between faults is far longer
    assert faults[1] - faults[0] > 150.0


def test_hold_keeps_work_and_unhold_resumes(tmp_path):
    f = """
    [[equipment.m1.failures]]
    name = "jam"
    time_to_failure = { dist = "constant", value_s = 25.0 }
    repair_time = { dist = "constant", value_s = 7.0 }
    """
    res = run_scenario(load_scenario(line(tmp_path, failures=f, second=False, horizon=400.0)),
                       out_dir=tmp_path / "o")
    ev = events(res)
    states = [e["detail"] for e in ev if e["kind"] == "state" and e["entity"] == "m1"]
    assert "Held" in states
    i = states.index("Holding")
    assert states[i:i + 4] == ["Holding", "Held", "Unholding", "Execute"]
    # each unit is in the machine for its 10 s of work plus any repair it sat through
    loads = {e["unit_id"]: e["time_s"] for e in ev if e["kind"] == "load"}
    done = {e["unit_id"]: e["time_s"] for e in ev if e["kind"] == "complete"}
    held = [u for u in done if done[u] - loads[u] > 10.0 + 1e-9]
    assert held, "some unit should have been interrupted"
    for u in done:
        assert done[u] - loads[u] in (pytest.approx(10.0), pytest.approx(17.0))
    assert not [e for e in ev if e["kind"] == "scrap"]


def test_abort_scraps_material_and_recovers_by_clear_reset_start(tmp_path):
    f = """
    [[equipment.m1.failures]]
    name = "crash"
    time_to_failure = { dist = "constant", value_s = 25.0 }
    repair_time = { dist = "constant", value_s = 7.0 }
    reaction = "abort"
    """
    res = run_scenario(load_scenario(line(tmp_path, failures=f, second=False, horizon=400.0)),
                       out_dir=tmp_path / "o")
    ev = events(res)
    states = [e["detail"] for e in ev if e["kind"] == "state" and e["entity"] == "m1"]
    i = states.index("Aborting")
    assert states[i:i + 8] == ["Aborting", "Aborted", "Clearing", "Stopped", "Resetting",
                               "Idle", "Starting", "Execute"]
    scrapped = [e for e in ev if e["kind"] == "scrap"]
    assert scrapped and all(e["detail"] == "abort" for e in scrapped)
    cmds = [e["detail"].split(":")[0] for e in ev
            if e["kind"] == "command" and e["location"] == "auto-recovery"]
    assert cmds[:2] == ["Reset", "Start"] and "Clear" in cmds
    # material balance: created = completed + scrapped + still inside
    created = sum(e["kind"] == "create" for e in ev)
    left = sum(e["kind"] in ("complete", "scrap") for e in ev)
    inside = created - left
    assert 0 <= inside <= 2


def test_changeover_only_when_product_changes(tmp_path):
    p = line(tmp_path, second=False, products=("a", "b"),
             source_extra='product_mix = { a = 0.5, b = 0.5 }',
             extra_eq='changeover = { dist = "constant", value_s = 3.0 }', horizon=3000.0)
    res = run_scenario(load_scenario(p), out_dir=tmp_path / "o")
    ev = events(res)
    loads = [e["product"] for e in ev if e["kind"] == "load"]
    switches = sum(1 for x, y in zip(loads, loads[1:]) if x != y)
    changeovers = [e for e in ev if e["kind"] == "changeover"]
    assert switches > 10
    assert len(changeovers) == switches
    setup = res.summary["equipment"]["m1"]["setup_time_s"]
    assert setup == pytest.approx(3.0 * switches, rel=1e-9)


def test_batch_transform_records_genealogy_and_containers(tmp_path):
    p = line(tmp_path, second=False, batch=3, products=("a", "case"),
             output='output = { product = "case", units = 1, container = true }',
             horizon=1000.0)
    res = run_scenario(load_scenario(p), out_dir=tmp_path / "o")
    ev = events(res)
    gen = pq.read_table(res.out_dir / "genealogy.parquet").to_pylist()
    children: dict[int, list[int]] = {}
    for g in gen:
        children.setdefault(g["child_id"], []).append(g["parent_id"])
    assert children and all(len(p) == 3 for p in children.values())
    created = [e["unit_id"] for e in ev if e["kind"] == "create"]
    parents = [p for ps in children.values() for p in ps]
    assert len(set(parents)) == len(parents) and set(parents) <= set(created)
    done = [e for e in ev if e["kind"] == "complete"]
    assert {e["unit_id"] for e in done} <= set(children)
    assert all(e["product"] == "case" for e in done)


def test_blocking_suspends_upstream_and_respects_capacity(tmp_path):
    p = line(tmp_path, interarrival='{ dist = "constant", value_s = 5.0 }', cap2="capacity_units = 2",
             horizon=3000.0)
    res = run_scenario(load_scenario(p), out_dir=tmp_path / "o")
    m1 = res.summary["equipment"]["m1"]
    assert m1["blocked_s"] > 1000.0
    ev = events(res)
    level = peak = 0
    for e in ev:
        if e["kind"] == "unload" and e["location"] == "q2":
            level += 1
        elif e["kind"] == "load" and e["entity"] == "m2":
            level -= 1
        peak = max(peak, level)
    assert peak == 2
    # throughput is set by m2 (30 s per unit)
    assert res.summary["throughput_per_h"] == pytest.approx(120.0, rel=0.02)


def test_illegal_command_is_rejected_and_logged(tmp_path):
    s = load_scenario(line(tmp_path, second=False, horizon=100.0))
    res = run_scenario(s, out_dir=tmp_path / "o")
    eq = res.plant.equipment["m1"]
    before = eq.state
    assert eq.command(Command.CLEAR, issuer="test") is False
    assert eq.state is before
    assert eq.commands_rejected == 1
    res.plant.model.close()


def test_stop_and_restart_by_command(tmp_path):
    """A Stop in the middle of work keeps the work; Reset and Start resume it."""
    s = load_scenario(line(tmp_path, second=False, horizon=200.0))
    from darkfab.scenarios.builder import build_plant
    plant = build_plant(s, 1, 0, tmp_path, "x")
    plant.start()
    env = plant.model.env
    eq = plant.equipment["m1"]
    env.run(until=25.0)  # unit 2 arrived at 20 s and is in process
    assert eq.state is State.EXECUTE
    assert eq.command(Command.STOP, issuer="test")
    # the auto-recovery supervisor resets and starts a stopped unit again
    env.run(until=200.0)
    plant.model.close()
    import pyarrow.parquet as pq2
    ev = pq2.read_table(tmp_path / "events.parquet").to_pylist()
    states = [e["detail"] for e in ev if e["kind"] == "state"]
    assert ["Stopping", "Stopped", "Resetting", "Idle", "Starting", "Execute"] == \
        states[states.index("Stopping"):states.index("Stopping") + 6]
    assert not [e for e in ev if e["kind"] == "scrap"]


def test_unit_started_without_material_suspends_as_starved(tmp_path):
    p = line(tmp_path, second=False, interarrival='{ dist = "constant", value_s = 100.0 }',
             horizon=150.0)
    res = run_scenario(load_scenario(p), out_dir=tmp_path / "o")
    ev = events(res)
    states = [(e["time_s"], e["detail"]) for e in ev if e["kind"] == "state"]
    assert states[:8] == [(0.0, s) for s in ("Resetting", "Idle", "Starting", "Execute",
                                             "Suspending", "Suspended")] + [
        (100.0, "Unsuspending"), (100.0, "Execute")]
    m1 = res.summary["equipment"]["m1"]
    assert m1["state_time_s"]["Execute"] == pytest.approx(10.0)
    assert m1["starved_s"] == pytest.approx(140.0)


def test_event_log_alone_balances_material_through_transformations(tmp_path):
    """Units in the plant = create + produce − consume − complete − scrap, checked against the
    plant's own WIP counter at the end of a packaging-line day."""
    res = run_scenario(load_scenario("packaging-line", ["scenario.horizon_s=86400",
                                                        "scenario.warmup_s=0"]),
                       out_dir=tmp_path / "o")
    kinds = pq.read_table(res.out_dir / "events.parquet", columns=["kind"]).column("kind")
    counts = {k: 0 for k in ("create", "produce", "consume", "complete", "scrap")}
    for k in kinds.to_pylist():
        if k in counts:
            counts[k] += 1
    inside = (counts["create"] + counts["produce"] - counts["consume"] - counts["complete"]
              - counts["scrap"])
    assert counts["produce"] > 0 and counts["consume"] > 0
    assert inside == res.plant.model.wip.value
