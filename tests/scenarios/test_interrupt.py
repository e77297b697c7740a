"""An interrupted run (SIGINT or SIGTERM) leaves readable Parquet files and a partial summary."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_readable_results(tmp_path, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "darkfab.scenarios.cli", "run",
                             "packaging-line", "--days", "400", "--quiet", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    # wait until the run has flushed at least one batch of events
    while time.time() < deadline:
        f = out / "events.parquet"
        if f.exists() and f.stat().st_size > 200_000:
            break
        time.sleep(0.1)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is True
    assert 0 < summary["simulated_s"] < 400 * 86400
    events = pq.read_table(out / "events.parquet", columns=["time_s"])
    assert events.num_rows == summary["events"] > 0
    assert max(events.column("time_s").to_pylist()) <= summary["simulated_s"]
    for name in ("states", "genealogy", "timeseries", "kpis"):
        pq.read_table(out / f"{name}.parquet")
