"""The verification sees the event log while it is written (no second pass over the file); it
must reach exactly the same verdict as reading events.parquet back."""

from __future__ import annotations

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.verification import verify


def test_online_scan_equals_reading_the_log_back(tmp_path):
    s = load_scenario("cdc-line", ["scenario.horizon_s=43200", "scenario.warmup_s=0"])
    res = run_scenario(s, out_dir=tmp_path / "run", batch_rows=4096)  # many batches
    online = res.verification
    assert online is not None
    from_file = verify(res.plant, res.summary, res.out_dir, s.scenario.horizon_s, faults=[])
    assert online["checks"] == from_file["checks"]
    assert online["ok"] == from_file["ok"]
    assert online["checks"]["unsafe_commands"]["commands_executed"] > 0
    assert online["checks"]["unit_balance"]["created"] > 0


def _batch(rows):
    import pyarrow as pa
    cols = ("time_s", "kind", "entity", "unit_id", "location", "detail")
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})


def test_replay_flags_illegal_and_interlocked_commands_across_batches():
    """Commands are checked against the unit's latest state before them — also when that state
    was logged in an earlier batch — and Reset/Start/Unhold/... are refused while a fault on the
    unit is active (unless the unit itself or the safety layer issues them)."""
    from types import SimpleNamespace

    from darkfab.scenarios.verification import _EventScan

    plant = SimpleNamespace(equipment={"m": None, "n": None}, control=None)
    scan = _EventScan(plant)
    scan.add(_batch([
        (0.0, "state", "m", -1, "m", "Idle"),
        (1.0, "command", "m", -1, "sup", "Start"),        # legal in Idle
        (2.0, "state", "m", -1, "m", "Starting"),
        (3.0, "state", "m", -1, "m", "Execute"),
        (3.5, "state", "n", -1, "n", "Idle"),
    ]))
    scan.add(_batch([
        (4.0, "command", "m", -1, "sup", "Start"),        # illegal: m is in Execute (batch 1)
        (5.0, "fault", "m", -1, "m", "jam"),
        (6.0, "state", "m", -1, "m", "Held"),
        (7.0, "command", "m", -1, "sup", "Unhold"),       # legal transition, but interlocked
        (8.0, "repair", "m", -1, "m", "jam"),
        (9.0, "command", "m", -1, "sup", "Unhold"),       # fine now
        (9.5, "command", "n", -1, "sup", "Start"),        # legal: n Idle since batch 1
        (10.0, "command", "x", -1, "sup", "Start"),       # not a unit of the plant: ignored
    ]))
    r = scan.unsafe_report()
    assert r["commands_executed"] == 5
    assert r["unsafe"] == 2
    reasons = [u["reason"] for u in r["examples"]]
    assert reasons[0] == "Start executed in Execute"
    assert reasons[1].startswith("Unhold by sup with active fault jam")
    assert [u["time_s"] for u in r["examples"]] == [4.0, 7.0]
