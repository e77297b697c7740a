"""Crash safety end to end: ``darkfab run cdc-line --days 3`` killed with SIGKILL at random
moments (delays from a seeded generator), then ``darkfab recover``; every table is read back
with pyarrow and compared with a complete run of the same seed.

What must hold after each kill: every table is readable with its declared schema; its rows are
exactly the first rows of the complete run's table (same values, same order: the events in time
order); nothing flushed before the kill is lost (the events recovered are at least those an
independent reader saw in the stream just before the kill); the summary is partial, with the
event count and the last event's time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkfab.scenarios.cli import main
from darkfab.scenarios.recover import RECOVERED_REASON, SCHEMAS

RUN = ["run", "cdc-line", "--days", "3", "--quiet", "--no-verify", "--flush-s", "0.3",
       "--flush-rows", "4000"]
KILLS = 3


def _cli(*args) -> list[str]:
    return [sys.executable, "-c", "import sys; from darkfab.scenarios.cli import main; "
            "sys.exit(main(sys.argv[1:]))", *args]


def _run_cmd(out: Path) -> list[str]:
    return _cli(*RUN, "--out", str(out))


def _rows_in_stream(path: Path) -> int:
    """Rows an independent reader gets from a stream being written (up to a cut batch)."""
    n = 0
    try:
        with open(path, "rb") as f:
            reader = pa.ipc.open_stream(f)
            while True:
                try:
                    n += reader.read_next_batch().num_rows
                except StopIteration:
                    return n
    except (pa.ArrowException, OSError):
        return n


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("complete")
    p = subprocess.run(_run_cmd(out), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert not list(out.glob("*.arrows")) and not (out / "started.json").exists()
    return out


def _start_and_kill(out: Path, delay_s: float) -> int | None:
    """Start a run, wait until its event stream exists, wait ``delay_s``, count the event
    rows readable in the stream, SIGKILL the run; returns that count (None: it had finished)."""
    proc = subprocess.Popen(_run_cmd(out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    stream = out / "events.parquet.arrows"
    t0 = time.monotonic()
    while not stream.exists() and proc.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.02)
    time.sleep(delay_s)
    seen = _rows_in_stream(stream) if stream.exists() else 0
    if proc.poll() is not None:
        return None
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    return seen


def _kill_at_random(out: Path, delay_s: float) -> int:
    """:func:`_start_and_kill`; -1 if the run had finished, or had written all its results and
    was exiting when the kill came."""
    seen = _start_and_kill(out, delay_s)
    if seen is None or (out / "summary.json").exists():  # killed while exiting: complete
        return -1
    return seen


def test_sigkill_at_random_moments_then_recover(complete, tmp_path):
    rng = np.random.default_rng(20250518)
    full = {p.name: pq.read_table(p) for p in complete.glob("*.parquet")}
    killed = 0
    for k in range(KILLS):
        out = tmp_path / f"killed{k}"
        seen = _kill_at_random(out, float(rng.uniform(0.0, 3.0)))
        if seen < 0:  # the run finished first (a slow machine): nothing to recover
            continue
        killed += 1
        assert main(["report", str(out)]) == 2  # readers refuse and name recover
        assert main(["recover", str(out)]) == 0
        assert not list(out.glob("*.arrows")) and not list(out.glob(".*"))
        tables = {p.name: p for p in out.glob("*.parquet")}
        # every staged table of the complete run survives (kpis.parquet is written at the end)
        assert set(tables) == set(full) - {"kpis.parquet"}
        for name, path in tables.items():
            t = pq.read_table(path)
            assert t.schema.equals(SCHEMAS[name]), name
            assert t.equals(full[name].slice(0, t.num_rows)), f"{name}: not a prefix"
        ev = pq.read_table(tables["events.parquet"])
        print(f"kill {k}: {seen} event rows seen before the kill, {ev.num_rows} recovered "
              f"of {full['events.parquet'].num_rows}")
        times = ev["time_s"].to_numpy()
        assert np.all(np.diff(times) >= 0)
        assert ev.num_rows >= seen, "rows flushed before the kill were lost"
        s = json.loads((out / "summary.json").read_text())
        assert s["partial"] is True and s["partial_reason"] == RECOVERED_REASON
        assert s["events"] == ev.num_rows
        assert s["simulated_s"] == (float(times[-1]) if len(times) else 0.0)
        assert s["run_id"] == json.loads((complete / "summary.json").read_text())["run_id"]
        assert "resolved_scenario" in s
    assert killed >= 1, "every run finished before its kill"


def test_readers_and_recover_on_a_finished_run(complete, tmp_path, capsys):
    assert main(["recover", str(complete)]) == 0
    assert "nothing to recover" in capsys.readouterr().out
    assert main(["recover", str(tmp_path)]) == 2
    assert "not a darkfab run folder" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--flush-s", "0"], ["--flush-s", "nan"],
                                  ["--flush-rows", "0"]])
def test_bad_flush_flags(flag, capsys):
    assert main(["run", "mm1", "--hours", "1", *flag]) == 2
    assert "--flush" in capsys.readouterr().err


def test_a_killed_rerun_into_a_finished_folder_recovers_its_own_rows(complete, tmp_path):
    """The same run again into the folder of a finished one (the same run id), killed: the
    previous run's summary and tables are gone from the start, so ``recover`` makes the
    tables from the new run's streams and writes its partial summary, not the old results."""
    full = pq.read_table(complete / "events.parquet")
    rng = np.random.default_rng(7)
    for attempt in range(3):
        out = tmp_path / f"again{attempt}"
        shutil.copytree(complete, out)
        # not _kill_at_random: the previous run's summary.json must not pass for this one's
        seen = _start_and_kill(out, float(rng.uniform(0.05, 0.6)))
        if seen is None:  # finished first: try again
            continue
        assert not (out / "kpis.parquet").exists() and not (out / "verification.json").exists()
        assert main(["recover", str(out)]) == 0
        ev = pq.read_table(out / "events.parquet")
        assert seen <= ev.num_rows < full.num_rows
        assert ev.equals(full.slice(0, ev.num_rows))
        s = json.loads((out / "summary.json").read_text())
        assert s["partial"] is True and s["events"] == ev.num_rows
        return
    pytest.skip("the run finished before each kill")
