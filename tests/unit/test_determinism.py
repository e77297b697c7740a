"""Reproducible by construction: named random streams, byte-identical event logs and common
random numbers (adding a machine leaves every other machine's draws unchanged)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from darkfab.factory.random_streams import RandomStreams, stable_crc32
from darkfab.scenarios import load_scenario, run_scenario

MM1 = Path(__file__).resolve().parents[2] / "scenarios" / "files" / "mm1.toml"
TABLES = ["events.parquet", "states.parquet", "genealogy.parquet", "kpis.parquet"]
PACKAGING_SHORT = ["scenario.horizon_s=86400"]  # 1 day, past the 12 h warm-up
MM1_SHORT = ["scenario.horizon_s=3600", "scenario.warmup_s=60"]


# --- RandomStreams ---------------------------------------------------------------------------
def test_same_seed_replication_name_same_draws():
    a = RandomStreams(42, 3).stream("equipment.press.process_time").random(1000)
    b = RandomStreams(42, 3).stream("equipment.press.process_time").random(1000)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("other", [(42, 3, "equipment.press.process_tim"),
                                   (42, 4, "equipment.press.process_time"),
                                   (43, 3, "equipment.press.process_time")],
                         ids=["name", "replication", "seed"])
def test_any_difference_gives_other_draws(other):
    a = RandomStreams(42, 3).stream("equipment.press.process_time").random(100)
    seed, rep, name = other
    b = RandomStreams(seed, rep).stream(name).random(100)
    assert not np.array_equal(a, b)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.5  # not merely shifted copies


def test_streams_do_not_depend_on_request_order():
    s1 = RandomStreams(7, 0)
    x1, y1 = s1.stream("x").random(50), s1.stream("y").random(50)
    s2 = RandomStreams(7, 0)
    y2, x2 = s2.stream("y").random(50), s2.stream("x").random(50)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)


def test_asking_for_a_name_twice_raises():
    s = RandomStreams(1, 0)
    s.stream("a")
    s.stream("b")
    with pytest.raises(ValueError):
        s.stream("a")


def test_negative_seed_or_replication_rejected():
    with pytest.raises(ValueError):
        RandomStreams(-1, 0)
    with pytest.raises(ValueError):
        RandomStreams(1, -1)


def test_stable_name_digest_is_process_independent():
    """The stream key must not come from the salted ``hash()``: a fresh interpreter with another
    hash seed derives the same draws."""
    code = ("from darkfab.factory.random_streams import RandomStreams, stable_crc32;"
            "print(stable_crc32('equipment.a.process_time'),"
            " RandomStreams(5, 2).stream('equipment.a.process_time').random())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": h}, check=True).stdout
            for h in ("1", "2")}
    assert len(outs) == 1
    crc, x = outs.pop().split()
    assert int(crc) == stable_crc32("equipment.a.process_time")
    assert float(x) == RandomStreams(5, 2).stream("equipment.a.process_time").random()


# --- byte-identical results --------------------------------------------------------------------
def _run(tmp_path: Path, name_or_path, overrides, folder: str, seed=None, replication=0):
    s = load_scenario(name_or_path, overrides)
    out = tmp_path / folder
    run_scenario(s, seed=seed, replication=replication, out_dir=out)
    return out


@pytest.mark.parametrize("name, overrides", [("mm1", MM1_SHORT),
                                             ("packaging-line", PACKAGING_SHORT)])
def test_same_inputs_byte_identical_tables(tmp_path, name, overrides):
    a = _run(tmp_path, name, overrides, "a")
    b = _run(tmp_path, name, overrides, "b")
    for t in TABLES:
        assert (a / t).read_bytes() == (b / t).read_bytes(), t
    assert pq.read_metadata(a / "events.parquet").num_rows > 100


def test_byte_identical_across_processes_with_different_hash_seeds(tmp_path):
    """Catches iteration over salted sets/dicts of strings and any use of ``hash()``."""
    outs = []
    for h in ("0", "12345"):
        out = tmp_path / f"h{h}"
        r = subprocess.run(
            [sys.executable, "-m", "darkfab.scenarios.cli", "run", "packaging-line",
             "--hours", "12", "--set", "scenario.warmup_s=3600", "--out", str(out), "--quiet"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONHASHSEED": h})
        assert r.returncode == 0, r.stderr
        outs.append(out)
    for t in TABLES:
        assert (outs[0] / t).read_bytes() == (outs[1] / t).read_bytes(), t


def _events(folder: Path):
    return pq.read_table(folder / "events.parquet").to_pydict()


def test_other_replication_other_event_log(tmp_path):
    a = _events(_run(tmp_path, "mm1", MM1_SHORT, "r0", replication=0))
    b = _events(_run(tmp_path, "mm1", MM1_SHORT, "r1", replication=1))
    assert a["time_s"] != b["time_s"]
    assert set(b["replication"]) == {1}


def test_other_seed_other_event_log(tmp_path):
    a = _events(_run(tmp_path, "mm1", MM1_SHORT, "s1", seed=1))
    b = _events(_run(tmp_path, "mm1", MM1_SHORT, "s2", seed=2))
    assert a["time_s"] != b["time_s"]


# --- common random numbers ---------------------------------------------------------------------
SECOND_CHAIN = '''
[nodes.arrivals2]
x_m = 0.0
y_m = 10.0

[nodes.station2]
x_m = 10.0
y_m = 10.0

[nodes.exit2]
x_m = 20.0
y_m = 10.0

[[links]]
a = "arrivals2"
b = "station2"

[[links]]
a = "station2"
b = "exit2"

[sources.arrivals2]
node = "arrivals2"
to = "queue2"
product = "part"
interarrival = { dist = "exponential", mean_s = 2.0 }

[buffers.queue2]
node = "station2"

[equipment.server2]
node = "station2"
input = "queue2"
process_time = { dist = "lognormal", mean_s = 1.5, cv = 0.5 }
next = "exit2"

[sinks.exit2]
node = "exit2"
'''
ORIGINAL_CHAIN = {"arrivals", "server", "exit"}


def _chain_rows(folder: Path, entities: set[str]) -> list[tuple]:
    """The chain's events with unit ids replaced by their order of creation within the chain
    (global ids and lot numbers interleave with the other chain's)."""
    ev = _events(folder)
    rank: dict[int, int] = {}
    rows = []
    for t, kind, ent, uid, prod, loc, det in zip(ev["time_s"], ev["kind"], ev["entity"],
                                                 ev["unit_id"], ev["product"], ev["location"],
                                                 ev["detail"]):
        if ent not in entities:
            continue
        if uid >= 0 and uid not in rank:
            assert kind == "create", "a unit must be created before anything else happens to it"
            rank[uid] = len(rank)
        rows.append((t, kind, ent, rank.get(uid, -1), prod, loc,
                     "" if kind == "create" else det))
    return rows


def test_adding_a_machine_leaves_other_draws_unchanged(tmp_path):
    text = MM1.read_text()
    (tmp_path / "mm1.toml").write_text(text)
    (tmp_path / "mm1x2.toml").write_text(text + SECOND_CHAIN)
    base = _run(tmp_path, tmp_path / "mm1.toml", MM1_SHORT, "base")
    more = _run(tmp_path, tmp_path / "mm1x2.toml", MM1_SHORT, "more")
    a = _chain_rows(base, ORIGINAL_CHAIN)
    b = _chain_rows(more, ORIGINAL_CHAIN)
    assert len(a) > 1000
    assert a == b
    # and the added chain really ran
    assert len(_chain_rows(more, {"arrivals2", "server2", "exit2"})) > 100
