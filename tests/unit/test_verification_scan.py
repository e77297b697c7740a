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
