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


# --- the vectorised scan against the row-by-row reference (the implementation before it) ------

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import verification_reference as reference  # noqa: E402

from darkfab.factory.packml import Command, State  # noqa: E402
from darkfab.scenarios.runner import _json_safe  # noqa: E402


@pytest.mark.parametrize("name, overrides", [
    ("mm1", ["scenario.horizon_s=20000"]),
    ("packaging-line", ["scenario.horizon_s=86400"]),
    # faults, repairs, recoveries and excused waits; the small bound gives long waits
    ("fault-campaign", ["scenario.horizon_s=460000", "verification.deadlock_bound_s=900"]),
])
def test_verification_json_equals_the_reference(tmp_path, name, overrides):
    """The run's verification.json (scan attached to the logs while they are written) is the
    same, byte for byte, as the reference implementation's, which reads events.parquet and
    states.parquet back."""
    s = load_scenario(name, ["scenario.warmup_s=0", *overrides])
    res = run_scenario(s, out_dir=tmp_path / "run", batch_rows=4096)  # many batches
    text = (res.out_dir / "verification.json").read_text()
    end = s.scenario.horizon_s
    faults = res.plant.faults.finish(end) if res.plant.faults is not None else []
    old = reference.verify(res.plant, res.summary, res.out_dir, end, faults)
    old = {"run_id": res.summary["run_id"], "simulated_s": end, "partial": False, **old}
    assert text == json.dumps(_json_safe(old), indent=2) + "\n"  # the file, byte for byte
    new = json.loads(text)
    assert new["checks"]["unsafe_commands"]["commands_executed"] > 0
    if name == "fault-campaign":
        assert new["checks"]["faults"]["injected"] > 0
        assert new["checks"]["deadlock"]["n_long_waits"] > 0  # the comparison covers waits
        assert not new["ok"]


_UNITS = ("m", "n", "o")
_STATES = [s.value for s in State]
_COMMANDS = [c.value for c in Command]


def _random_log(rng: np.random.Generator, n: int) -> list[tuple]:
    """Events of three units and one other entity: states, commands (many illegal), faults and
    repairs (some interlocked commands), maintenance, unit movements and refills."""
    rows = []
    for i in range(n):
        ent = str(rng.choice([*_UNITS, "robot"]))
        kind = str(rng.choice(["state", "state", "command", "command", "fault", "repair",
                               "maintenance", "maintenance_done", "create", "produce",
                               "complete", "scrap", "consume", "refill", "load"]))
        unit_id = int(rng.integers(-1, 3))
        loc = str(rng.choice(["sup", "safety", ent, "op"]))
        if kind == "state":
            detail = str(rng.choice(_STATES))
        elif kind == "command":
            detail = str(rng.choice(_COMMANDS))
        elif kind in ("fault", "repair"):
            detail = str(rng.choice(["jam", "crash"]))
        else:
            detail = f"x{i}"
        rows.append((float(i), kind, ent, unit_id, loc, detail))
    return rows


@pytest.mark.parametrize("seed", range(12))
def test_scan_equals_the_reference_on_random_logs(seed):
    """Random logs cut into random batches: counts, excusals and the command replay (counts,
    first ten unsafe commands with their reasons) equal the reference's."""
    from types import SimpleNamespace

    from darkfab.scenarios.verification import _EventScan

    rng = np.random.default_rng(seed)
    log = _random_log(rng, int(rng.integers(50, 400)))
    plant = SimpleNamespace(equipment=dict.fromkeys(_UNITS), control=None)
    new, old = _EventScan(plant), reference._EventScan(plant)
    cuts = sorted(set(rng.integers(0, len(log), int(rng.integers(0, 8))).tolist()))
    for a, b in zip([0, *cuts], [*cuts, len(log)]):
        if b > a:
            new.add(_batch(log[a:b]))
            old.add(_batch(log[a:b]))
    assert new.unsafe_report() == old.unsafe_report()
    assert new.unsafe_report()["unsafe"] > 0
    assert (new.counts, new.refills, new.excusals) == (old.counts, old.refills, old.excusals)
    assert (new.state, new.active) == (old.state, old.active)
