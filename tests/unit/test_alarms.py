"""The alarm system (darkfab.factory.alarms): ISA-18.2 lifecycle, idempotence, acknowledgement,
bounded memory, and the EEMUA 191 KPIs against an independent computation from the rows of
alarms.parquet read back with pyarrow."""

from __future__ import annotations

import gc
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from darkfab.factory.alarms import Alarm, AlarmSystem, eemua_rate_assessment
from darkfab.factory.recorder import ALARMS_SCHEMA, TableWriter


class Rows:
    """A writer that keeps the rows (TableWriter's ``append`` signature)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def append(self, *row) -> None:
        self.rows.append(row)


class Log:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def record(self, *row) -> None:
        self.rows.append(row)


def test_lifecycle_raise_acknowledge_clear():
    w, log = Rows(), Log()
    s = AlarmSystem(w, events=log)
    seen = []
    s.subscribe(lambda kind, a: seen.append((kind, a.id, a.active)))
    a = s.raise_alarm(10.0, "cartoner", "jam", "cartoner held", "high")
    assert (a.id, a.source, a.condition, a.priority, a.raised_s) == (1, "cartoner", "jam",
                                                                     "high", 10.0)
    assert a.active and s.active() == (a,) and s.active("cartoner") == (a,)
    assert s.active("case_packer") == ()
    assert s.acknowledge(12.5, 1, "ops") is None
    assert (a.acknowledged_s, a.acknowledged_by) == (12.5, "ops")
    assert a.active  # acknowledged, still active until the condition returns to normal
    assert s.clear(20.0, "cartoner", "jam") is a
    assert not a.active and a.cleared_s == 20.0 and s.active() == ()
    assert w.rows == [(1, "cartoner", "jam", "high", "cartoner held", 10.0, 12.5, "ops", 20.0)]
    assert seen == [("alarm", 1, True), ("alarm_acknowledged", 1, True),
                    ("alarm_cleared", 1, False)]
    assert [r[1] for r in log.rows] == ["alarm", "alarm_acknowledged", "alarm_cleared"]
    assert log.rows[0] == (10.0, "alarm", "cartoner", -1, "", "high", "jam: cartoner held")
    assert log.rows[1][5] == "ops" and log.rows[2][6] == "jam"


def test_raise_is_idempotent_while_active_and_a_new_episode_after_clear():
    w = Rows()
    s = AlarmSystem(w)
    calls = []
    s.subscribe(lambda kind, a: calls.append(kind))
    a = s.raise_alarm(1.0, "amr-1", "stall", "x", "medium")
    assert s.raise_alarm(2.0, "amr-1", "stall", "other text", "low") is a
    assert (a.text, a.priority, a.raised_s) == ("x", "medium", 1.0)
    b = s.raise_alarm(2.0, "amr-2", "stall", priority="medium")  # another source
    c = s.raise_alarm(2.0, "amr-1", "battery_fade", priority="medium")  # another condition
    assert (b.id, c.id) == (2, 3) and s.active() == (a, b, c)
    assert calls == ["alarm"] * 3
    assert s.clear(3.0, "amr-1", "stall") is a
    assert s.clear(3.0, "amr-1", "stall") is None  # not active: nothing
    assert s.clear(3.0, "nobody", "stall") is None
    d = s.raise_alarm(4.0, "amr-1", "stall")
    assert d.id == 4 and d is not a and s.active() == (b, c, d)
    assert len(w.rows) == 1 and s.raised_total == 4


def test_acknowledge_refusals():
    s = AlarmSystem(Rows())
    a = s.raise_alarm(0.0, "u", "f")
    assert s.acknowledge(1.0, 99, "ops") == "unknown alarm 99"
    assert s.acknowledge(1.0, 0, "ops") == "unknown alarm 0"
    assert s.acknowledge(1.0, "1", "ops").startswith("unknown alarm")
    assert s.acknowledge(1.0, np.int64(1), "ops") is None  # any integer type
    assert "already acknowledged at 1 s by ops" in s.acknowledge(2.0, 1, "other")
    assert a.acknowledged_by == "ops"
    s.clear(3.0, "u", "f")
    b = s.raise_alarm(4.0, "u", "g")
    s.clear(5.0, "u", "g")  # returned to normal unacknowledged
    assert s.acknowledge(6.0, b.id, "ops") == "alarm 2 already cleared (returned to normal)"
    assert b.acknowledged_s is None
    with pytest.raises(ValueError, match="priority"):
        s.raise_alarm(7.0, "u", "h", priority="urgent")


def test_finish_writes_the_open_records_once():
    w = Rows()
    s = AlarmSystem(w)
    s.raise_alarm(1.0, "a", "x")
    s.raise_alarm(2.0, "b", "y")
    s.clear(3.0, "a", "x")
    s.finish(10.0)
    s.finish(10.0)
    assert [(r[0], r[-1]) for r in w.rows] == [(1, 3.0), (2, None)]
    assert s.kpis(10.0)["active_end"] == 1


def _live_alarms() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Alarm)


def test_memory_is_bounded_records_leave_when_cleared():
    """A year of alarms, one every 10 minutes, each cleared 5 minutes later and half of them
    acknowledged: no record stays in memory after it is written."""
    w = Rows()
    s = AlarmSystem(w, standing_after_s=3600.0)
    before = _live_alarms()
    n = 52_560
    for k in range(n):
        t = 600.0 * k
        a = s.raise_alarm(t, f"unit{k % 7}", "jam", priority="high")
        if k % 2:
            s.acknowledge(t + 60.0, a.id, "ops")
        s.clear(t + 300.0, f"unit{k % 7}", "jam")
        del a
    assert s.in_memory() == 0 and s.active() == ()
    assert _live_alarms() == before
    assert len(w.rows) == n
    k = s.kpis(600.0 * n)
    assert k["raised"] == n and k["acknowledged"] == n // 2
    assert k["cleared_unacknowledged"] == n - n // 2
    assert k["mean_time_to_acknowledge_s"] == pytest.approx(60.0)


def test_eemua_rate_bands():
    assert eemua_rate_assessment(0.5) == "very likely acceptable"
    assert eemua_rate_assessment(1.0) == "very likely acceptable"
    assert eemua_rate_assessment(1.5) == "manageable"
    assert eemua_rate_assessment(6.0) == "likely over-demanding"
    assert eemua_rate_assessment(11.0) == "very likely unacceptable"


# --- KPIs against an independent computation from the table ------------------------------
W, THRESHOLD, STANDING, WARM, END = 600.0, 10, 7200.0, 3600.0, 4 * 86400.0


def _synthetic(path, seed: int):
    """Alarms of 12 sources: background alarms plus bursts (floods), some acknowledged, some
    cleared late (standing) and some never cleared; written to ``path`` and returned with the
    KPIs the alarm system computed."""
    rng = np.random.default_rng(seed)
    w = TableWriter(path, ALARMS_SCHEMA, "test", 0, batch_rows=97)
    s = AlarmSystem(w, flood_window_s=W, flood_threshold=THRESHOLD, operator_positions=2,
                    standing_after_s=STANDING, warmup_s=WARM)
    times = list(np.cumsum(rng.exponential(900.0, 400)))
    for start in rng.uniform(0, END - 3600, 6):  # bursts: 8 to 30 alarms within minutes
        times += list(start + np.sort(rng.uniform(0, rng.uniform(60, 900), rng.integers(8, 30))))
    times = sorted(t for t in times if t < END)
    # (time, order, action, args): clears and acks at their own times, processed in order
    actions = []
    for k, t in enumerate(times):
        src, cond = f"s{rng.integers(12)}", f"c{k}"
        actions.append((t, 1, "raise", (src, cond, ("critical", "high", "medium",
                                                    "low")[rng.integers(4)])))
        life = rng.choice([rng.exponential(300.0), rng.exponential(20_000.0), math.inf],
                          p=[0.7, 0.25, 0.05])
        ack = t + min(life, rng.exponential(400.0)) * 0.999  # before any clear
        if rng.random() < 0.5 and ack < END:
            actions.append((ack, 2, "ack", (k,)))
        if math.isfinite(life) and t + life < END:
            actions.append((t + life, 3, "clear", (src, cond)))
    actions.sort(key=lambda x: (x[0], x[1]))
    ids = {}
    for t, _, what, args in actions:
        if what == "raise":
            ids[len(ids)] = s.raise_alarm(t, args[0], args[1], priority=args[2]).id
        elif what == "ack":
            s.acknowledge(t, ids[args[0]], "ops")
        else:
            s.clear(t, *args)
    s.finish(END)
    k = s.kpis(END)
    w.close()
    return pq.read_table(path).to_pylist(), k


def _independent(rows):
    """The KPIs from the rows alone (no shared code with the alarm system)."""
    raised = sorted(r["raised_s"] for r in rows if r["raised_s"] >= WARM)
    n = len(raised)
    # peak in any window (t - W, t]: brute force over windows ending at a raise
    peak = max(sum(1 for x in raised if t - W < x <= t) for t in raised)
    # flood intervals: the count steps +1 at each raise and -1 at raise + W (the -1 first at
    # equal times, the window being open on the left)
    steps = sorted([(t, 1) for t in raised] + [(t + W, -1) for t in raised],
                   key=lambda e: (e[0], e[1]))
    count, floods, flood_s, since = 0, 0, 0.0, None
    for t, d in steps:
        count += d
        if since is None and count > THRESHOLD:
            since, floods = t, floods + 1
        elif since is not None and count <= THRESHOLD:
            flood_s += min(t, END) - since
            since = None
    if since is not None:
        flood_s += END - since
    periods = math.ceil((END - WARM) / W)
    per_bin = [0] * periods
    for t in raised:
        per_bin[int((t - WARM) // W)] += 1
    # standing: active at least STANDING; the count only rises at raised + STANDING, so its
    # maximum after warm-up is at one of those times (or at the warm-up itself)
    def standing_at(t):
        return sum(1 for r in rows if r["raised_s"] + STANDING <= t
                   and (r["cleared_s"] is None or r["cleared_s"] > t))
    cands = [WARM] + [r["raised_s"] + STANDING for r in rows
                      if WARM <= r["raised_s"] + STANDING <= END]
    acks = [r["acknowledged_s"] - r["raised_s"] for r in rows
            if r["raised_s"] >= WARM and r["acknowledged_s"] is not None]
    by_source = {}
    for r in rows:
        if r["raised_s"] >= WARM:
            by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    top = sorted(by_source.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return {
        "raised": n,
        "per_10min_per_operator": n / (END - WARM) * 600.0 / 2,
        "peak_per_window": peak,
        "floods": floods,
        "time_in_flood_pct": 100.0 * flood_s / (END - WARM),
        "windows_over_threshold_pct": 100.0 * sum(c > THRESHOLD for c in per_bin) / periods,
        "standing_end": standing_at(END),
        "standing_max": max(standing_at(t) for t in cands),
        "active_end": sum(r["cleared_s"] is None for r in rows),
        "acknowledged": len(acks),
        "cleared_unacknowledged": sum(1 for r in rows if r["raised_s"] >= WARM
                                      and r["cleared_s"] is not None
                                      and r["acknowledged_s"] is None),
        "mean_time_to_acknowledge_s": sum(acks) / len(acks),
        "by_priority": {p: sum(1 for r in rows if r["raised_s"] >= WARM and r["priority"] == p)
                        for p in ("critical", "high", "medium", "low")},
        "bad_actors": [{"source": s, "alarms": c} for s, c in top],
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kpis_match_an_independent_computation_from_the_table(tmp_path, seed):
    rows, k = _synthetic(tmp_path / "alarms.parquet", seed)
    ref = _independent(rows)
    assert ref["floods"] >= 1 and ref["standing_max"] >= 1  # the data exercise every KPI
    assert len({r["id"] for r in rows}) == len(rows)  # one row per alarm
    for key, v in ref.items():
        if isinstance(v, float):
            assert k[key] == pytest.approx(v, rel=1e-9, abs=1e-9), key
        else:
            assert k[key] == v, key
