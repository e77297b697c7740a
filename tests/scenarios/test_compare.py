"""``darkfab compare``: two controllers, common random numbers, paired differences with
t-intervals."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq

from darkfab.scenarios.cli import main


def test_compare_packaging_line(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "packaging-line", "--controller", "auto-recovery", "--controller",
               "cautious{max_faults = 1, window_s = 1e9}", "--replications", "3",
               "--engine", "serial", "--days", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "paired differences B - A" in text
    for kpi in ("throughput_per_h", "oee_mean", "oee.cartoner", "recovery_time_s"):
        assert any(line.startswith(kpi) for line in text.splitlines()), kpi
    sm = json.loads((out / "compare.json").read_text())
    assert sm["runs_ok"] == 6 and sm["replications"] == 3
    rows = {r["kpi"]: r for r in sm["kpis"]}
    thr = rows["throughput_per_h"]
    assert thr["pairs"] == 3
    assert thr["low"] <= thr["mean_difference"] <= thr["high"]
    assert math.isclose(thr["mean_difference"], thr["mean_b"] - thr["mean_a"], rel_tol=1e-9,
                        abs_tol=1e-9)
    assert thr["mean_difference"] < 0  # taking failing units out costs throughput
    assert pq.read_table(out / "compare.parquet").num_rows == len(rows)
    # common random numbers: replication r of A and of B saw the same arrivals
    for r in range(3):
        a = json.loads((out / "runs" / f"A-r{r:03d}" / "summary.json").read_text())
        b = json.loads((out / "runs" / f"B-r{r:03d}" / "summary.json").read_text())
        assert a["seed"] == b["seed"] and a["replication"] == b["replication"] == r
        ev_a = pq.read_table(out / "runs" / f"A-r{r:03d}" / "events.parquet").to_pylist()
        ev_b = pq.read_table(out / "runs" / f"B-r{r:03d}" / "events.parquet").to_pylist()
        first_a = [e["time_s"] for e in ev_a if e["kind"] == "create"][:5]
        first_b = [e["time_s"] for e in ev_b if e["kind"] == "create"][:5]
        assert first_a == first_b  # (later a blocked source releases at other times)


def test_compare_usage_errors(tmp_path, capsys):
    assert main(["compare", "mm1", "--controller", "auto-recovery"]) == 2
    assert main(["compare", "mm1", "--controller", "auto-recovery", "--controller", "nobody",
                 "--replications", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--controller nobody" in err and "unknown controller 'nobody'" in err
