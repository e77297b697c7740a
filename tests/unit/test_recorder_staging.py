"""Crash-safe tables (factory/recorder.py staging): when rows reach the disk, what a cut-off
stream still gives, byte-identical compaction, and recovery of a folder (scenarios/recover.py).
The end-to-end SIGKILL test is tests/scenarios/test_crash_safety.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkfab.factory.recorder import (CHECK_ROWS, EVENTS_SCHEMA, STATES_SCHEMA, EventLog,
                                      FlushPolicy, TableWriter, compact, read_stage, stage_in_use,
                                      stage_path, staging, write_table)
from darkfab.scenarios.recover import (RECOVERED_REASON, STARTED_FILE, RecoverError, recover_run,
                                       unfinished_message)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def stage_rows(path) -> int:
    _, batches, _ = read_stage(stage_path(path))
    return sum(b.num_rows for b in batches)


def fill(log: EventLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.record(float(i), "create", f"src{i % 3}", i, "p", "n1", f"d{i}")


@pytest.mark.parametrize("bad", [{"every_s": 0.0}, {"every_s": -1.0}, {"every_s": float("nan")},
                                 {"rows": 0}, {"rows": 2.5}, {"rows": True}])
def test_flush_policy_refuses_nonsense(bad):
    with pytest.raises(ValueError):
        FlushPolicy(**bad)


def test_rows_reach_the_stream_at_the_row_threshold(tmp_path):
    with staging(FlushPolicy(every_s=float("inf"), rows=100)):
        log = EventLog(tmp_path / "events.parquet", "r", 0)
    fill(log, 99)
    assert stage_rows(log.path) == 0
    fill(log, 1, start=99)
    assert stage_rows(log.path) == 100  # readable while the writer is open
    fill(log, 250, start=100)
    assert stage_rows(log.path) == 300
    log.close()


def test_timed_flush_writes_every_table_of_the_group(tmp_path):
    clock = Clock()
    with staging(FlushPolicy(every_s=5.0, rows=10**9), clock) as group:
        log = EventLog(tmp_path / "events.parquet", "r", 0)
        states = TableWriter(tmp_path / "states.parquet", STATES_SCHEMA, "r", 0)
    fill(log, 10)
    states.append("m1", "Execute", 0.0, 1.0, 1.0)
    clock.t = 4.9
    assert not group.tick()
    assert stage_rows(log.path) == stage_rows(states.path) == 0
    clock.t = 5.0
    assert group.tick()
    assert (stage_rows(log.path), stage_rows(states.path)) == (10, 1)
    # without the runner's tick: the writer looks at the clock every CHECK_ROWS rows
    clock.t = 10.0
    fill(log, CHECK_ROWS - 1, start=10)
    assert stage_rows(log.path) == 10
    fill(log, 1, start=10 + CHECK_ROWS - 1)
    assert stage_rows(log.path) == 10 + CHECK_ROWS
    assert group.flushes == 2
    log.close()
    states.close()


def _events(path, n: int, policy: FlushPolicy | None, batch_rows: int) -> bytes:
    with staging(policy):
        log = EventLog(path, "run-x", 3, batch_rows)
    fill(log, n)
    log.close()
    assert not stage_path(path).exists()
    return path.read_bytes()


def test_compacted_file_does_not_depend_on_flushes(tmp_path):
    """Same rows: same bytes, written directly or through a stream flushed every 7 or 1,000
    rows (row groups of batch_rows rows whatever the flushes)."""
    direct = _events(tmp_path / "a.parquet", 5000, None, 1024)
    assert _events(tmp_path / "b.parquet", 5000, FlushPolicy(rows=7), 1024) == direct
    assert _events(tmp_path / "c.parquet", 5000, FlushPolicy(rows=1000), 1024) == direct
    meta = pq.ParquetFile(tmp_path / "b.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1024] * 4 + [904]


def _states_extended(path, sizes, policy: FlushPolicy | None, batch_rows: int) -> bytes:
    """States rows appended in columnar chunks of ``sizes`` rows (``extend``, as the line's
    genealogy and NIR rows are): a chunk may cross a row-group boundary."""
    with staging(policy):
        w = TableWriter(path, STATES_SCHEMA, "run-x", 3, batch_rows)
    k = 0
    for n in sizes:
        w.extend([f"m{k + i}" for i in range(n)], ["Execute"] * n,
                 [float(k + i) for i in range(n)], [k + i + 1.0 for i in range(n)], [1.0] * n)
        k += n
    w.close()
    return path.read_bytes()


def test_row_groups_do_not_depend_on_extend_sizes_or_mode(tmp_path):
    """Columnar appends of any sizes give the same file, direct or staged: row groups of exactly
    batch_rows rows (a direct writer used to write a chunk that crossed the boundary as one
    larger group)."""
    rng = np.random.default_rng(5)
    sizes = [int(x) for x in rng.integers(1, 9, 400)]
    by_one = _states_extended(tmp_path / "a.parquet", [1] * sum(sizes), None, 16)
    assert _states_extended(tmp_path / "b.parquet", sizes, None, 16) == by_one
    assert _states_extended(tmp_path / "c.parquet", sizes, FlushPolicy(rows=5), 16) == by_one
    meta = pq.ParquetFile(tmp_path / "b.parquet").metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert groups[:-1] == [16] * (len(groups) - 1) and 0 < groups[-1] <= 16
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_tiny_flushes_keep_few_batches_in_memory(tmp_path):
    """A table that gets one row per timed flush (alarms, states of a quiet plant): the rows
    waiting for a row group are merged, not kept as one Arrow batch per flush."""
    clock = Clock()
    with staging(FlushPolicy(every_s=1.0, rows=10**9), clock) as group:
        w = TableWriter(tmp_path / "states.parquet", STATES_SCHEMA, "r", 0)
    most = 0
    for i in range(1000):
        w.append("m1", "Execute", float(i), i + 1.0, 1.0)
        clock.t += 1.0
        group.tick()
        most = max(most, len(w._groups.pending))
    assert 0 < most <= 64  # not 1,000
    w.close()
    t = pq.read_table(tmp_path / "states.parquet")
    assert t.column("start_s").to_pylist() == [float(i) for i in range(1000)]


def test_a_failing_parquet_write_is_made_from_the_stream(tmp_path, monkeypatch):
    """Writing the Parquet file fails in the middle of a run (disk full, an interrupt): the rows
    are not written twice, the stream keeps them all, and ``close`` makes the file from it."""
    from darkfab.factory import recorder
    expected = _events(tmp_path / "ref.parquet", 300, FlushPolicy(rows=50), 64)
    with staging(FlushPolicy(every_s=float("inf"), rows=50)):
        log = EventLog(tmp_path / "events.parquet", "run-x", 3, 64)
    fill(log, 100)
    calls = {"n": 0}
    add = recorder._RowGroups.add

    def failing(self, b):  # interrupted once, right after the batch went into the file
        add(self, b)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(recorder._RowGroups, "add", failing)
    with pytest.raises(KeyboardInterrupt):
        fill(log, 50, start=100)
    assert stage_rows(log.path) == 150  # the stream got the batch
    fill(log, 150, start=150)
    log.close()
    assert (tmp_path / "events.parquet").read_bytes() == expected
    assert not stage_path(log.path).exists() and not list(tmp_path.glob(".*"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX flock")
def test_a_second_writer_cannot_empty_a_live_stream(tmp_path):
    """Another writer of the same table (a second run into the folder) is refused before it
    touches the live run's files: its stream and its Parquet file being written."""
    (tmp_path / "ref").mkdir()
    expected = _events(tmp_path / "ref" / "events.parquet", 25, FlushPolicy(rows=10), 8)
    with staging(FlushPolicy(every_s=float("inf"), rows=10)):
        log = EventLog(tmp_path / "events.parquet", "run-x", 3, 8)  # row groups on disk
    fill(log, 25)
    assert stage_rows(log.path) == 20
    with pytest.raises(BlockingIOError), staging(FlushPolicy()):
        EventLog(tmp_path / "events.parquet", "run-x", 4)
    assert stage_rows(log.path) == 20
    log.close()
    assert log.path.read_bytes() == expected


def test_write_table_matches_the_writer(tmp_path):
    rows = [("m1", "Execute", 0.0, 2.0, 2.0), ("m2", "Idle", 1.0, 4.0, 3.0)]
    write_table(tmp_path / "a.parquet", STATES_SCHEMA, rows, "r", 1)
    w = TableWriter(tmp_path / "b.parquet", STATES_SCHEMA, "r", 1)
    for r in rows:
        w.append(*r)
    w.close()
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_a_cut_stream_gives_every_complete_batch(tmp_path):
    """Cut the stream at random byte offsets (a process killed in the middle of a write):
    what is read back is always the first k batches, for the largest k whose bytes survive."""
    with staging(FlushPolicy(every_s=float("inf"), rows=50)):
        log = EventLog(tmp_path / "events.parquet", "r", 0)
    stage = stage_path(log.path)
    ends = [stage.stat().st_size]  # the schema and an empty batch
    for k in range(8):
        fill(log, 50, start=50 * k)
        ends.append(stage.stat().st_size)
    data = stage.read_bytes()
    full = pa.Table.from_batches(list(read_stage(stage)[1]))
    cut = tmp_path / "cut.parquet.arrows"
    rng = np.random.default_rng(18)
    for size in sorted(set(rng.integers(ends[0], len(data), 40).tolist()) | set(ends)):
        cut.write_bytes(data[:size])
        schema, batches, problems = read_stage(cut)
        got = pa.Table.from_batches(list(batches), schema)
        whole = sum(1 for e in ends[1:] if e <= size)
        assert got.equals(full.slice(0, 50 * whole))
        assert bool(problems) == (size not in ends)
    log.close()


def test_lock_tells_a_live_writer(tmp_path):
    with staging(FlushPolicy()):
        log = EventLog(tmp_path / "events.parquet", "r", 0)
    assert stage_in_use(stage_path(log.path))
    assert "darkfab recover" in unfinished_message(tmp_path)
    with pytest.raises(RecoverError, match="live run"):
        recover_run(tmp_path)
    log.close()
    assert unfinished_message(tmp_path) is None


DEAD_RUN = """
import json, os, signal, sys
from pathlib import Path
from darkfab.factory.recorder import STATES_SCHEMA, EventLog, FlushPolicy, TableWriter, staging
run = Path(sys.argv[1])
(run / "started.json").write_text(json.dumps({"scenario": "demo", "run_id":
                                              "demo-s7-r2-0123abcd", "seed": 7,
                                              "replication": 2}))
with staging(FlushPolicy(every_s=float("inf"), rows=100)):
    log = EventLog(run / "events.parquet", "demo-s7-r2-0123abcd", 2)
    TableWriter(run / "states.parquet", STATES_SCHEMA, "demo-s7-r2-0123abcd", 2)
for i in range(250):  # 200 rows flushed, 50 pending when the process is killed
    log.record(float(i), "create", "src", i, "p", "n1", "")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_recover_a_dead_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    p = subprocess.run([sys.executable, "-c", DEAD_RUN, str(run)], capture_output=True,
                       timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    stages = sorted(p.name for p in run.iterdir() if p.suffix == ".arrows")
    assert stages == ["events.parquet.arrows", "states.parquet.arrows"]
    assert not stage_in_use(run / "events.parquet.arrows")  # the lock died with the process
    r = recover_run(run)
    assert r["tables"] == {"events.parquet": 200, "states.parquet": 0}
    ev = pq.read_table(run / "events.parquet")
    assert ev.schema.equals(EVENTS_SCHEMA) and ev["time_s"].to_pylist() == list(range(200))
    assert pq.read_table(run / "states.parquet").schema.equals(STATES_SCHEMA)
    s = json.loads((run / "summary.json").read_text())
    assert s["partial"] is True and s["partial_reason"] == RECOVERED_REASON
    assert (s["events"], s["simulated_s"], s["seed"], s["replication"]) == (200, 199.0, 7, 2)
    assert not (run / STARTED_FILE).exists() and not list(run.glob("*.arrows"))
    assert recover_run(run)["recovered"] is False  # idempotent


def test_recover_after_a_kill_during_compaction(tmp_path):
    """Killed after the rename of the compacted file but before the stream was deleted, and
    with a temporary file left: the complete file is kept, the rest cleaned up."""
    run = tmp_path / "run"
    run.mkdir()
    rows = [("m1", "Execute", 0.0, 2.0, 2.0)]
    write_table(run / "states.parquet", STATES_SCHEMA, rows, "demo-s1-r0-0123abcd", 0)
    (run / "states.parquet.arrows").write_bytes(b"")  # stream of a compacted table
    (run / ".events.parquet.tmp").write_bytes(b"PAR1 cut")
    r = recover_run(run)
    assert r["tables"] == {"states.parquet": 1}
    assert sorted(p.name for p in run.iterdir()) == ["states.parquet", "summary.json"]


def test_recover_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(RecoverError, match="not a darkfab run folder"):
        recover_run(tmp_path)
    with pytest.raises(RecoverError, match="not a folder"):
        recover_run(tmp_path / "nope")


def test_a_stream_without_schema_gets_the_declared_one(tmp_path):
    (tmp_path / "events.parquet.arrows").write_bytes(b"")  # killed before the first write
    rows, _ = compact(tmp_path / "events.parquet.arrows", tmp_path / "events.parquet",
                      schema=EVENTS_SCHEMA)
    assert rows == 0 and pq.read_table(tmp_path / "events.parquet").schema.equals(EVENTS_SCHEMA)
