"""The level-2 API ratio trim from the NIR (``loops.api_trim``): a supply of API at 95 %
potency for 10 hours (every container into the API feeder), with and without the trim."""

from __future__ import annotations

import pyarrow.parquet as pq

from darkfab.scenarios import load_scenario, run_scenario

#: every API container emptied into the feeder in the first ~10 h is at 95 % potency (the
#: hopper cycles every ~3,000 s); the line's model is blind to it, the NIR sees it
LOW_POTENCY = "faults=[" + ", ".join(
    f'{{mode = "oos_raw_material_lot", time_s = {2900 + 3000 * i}, target = "cdc.api", '
    'potency = 0.95}' for i in range(12)) + "]"


def _run(tmp_path, trim: bool):
    s = load_scenario("cdc-line", ["scenario.warmup_s=0", "scenario.horizon_s=72000",
                                   f"continuous_lines.cdc.loops.api_trim={str(trim).lower()}",
                                   LOW_POTENCY])
    return run_scenario(s, out_dir=tmp_path / str(trim))


def test_trim_compensates_a_low_potency_supply(tmp_path):
    """Without the trim the NIR finds the blend ~5 % low for hours and the PAT diverts it; with
    it, the API feeder's set-point rises until the NIR reads label claim again: the trim goes
    up by several % while the low-potency lots are in the line, and the PAT diverts much less."""
    off, on = _run(tmp_path, False), _run(tmp_path, True)
    k_off = off.summary["continuous_lines"]["cdc"]
    k_on = on.summary["continuous_lines"]["cdc"]
    pat_off = k_off["diverted_kg_by_cause"].get("pat", 0.0)
    pat_on = k_on["diverted_kg_by_cause"].get("pat", 0.0)
    assert pat_off > 100.0  # the disturbance matters without the trim
    assert pat_on < 0.5 * pat_off
    assert k_on["released_out_of_spec_kg"] <= k_off["released_out_of_spec_kg"]
    rows = [r for r in pq.read_table(on.out_dir / "events.parquet").to_pylist()
            if r["kind"] == "api_trim"]
    trims = [float(r["detail"].split(" %")[0]) for r in rows]
    assert max(trims) > 3.0 and max(trims) <= 5.0  # bounded by api_trim_max_pct
    assert not [r for r in pq.read_table(off.out_dir / "events.parquet").to_pylist()
                if r["kind"] == "api_trim"]
    assert on.summary["mass_balance_rel_error"] < 1e-9
