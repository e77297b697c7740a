"""Little's law and KPI bookkeeping checked on the event log itself (Little 1961, Oper Res 9:383).

From ``events.parquet`` alone: arrival a_i = time of the unit's ``create``, departure d_i = time
of its ``complete`` or ``scrap`` (∞ if still inside at the end T). N(t) = #created − #departed.

* Sample-path identity (exact, any stable or unstable path): ∫₀ᵀ N dt = Σᵢ (min(dᵢ, T) − aᵢ),
  and on the post-warm-up window [w, T]: ∫_w^T N dt = Σᵢ |[aᵢ, dᵢ] ∩ [w, T]|.
* L = λW on [w, T] with the usual estimators (arrivals in the window, sojourns of those that
  left by T): equal up to edge effects of a few units × a few sojourn times out of T − w.
* The KPIs in summary.json (wip_mean, lead-time mean, units completed, throughput, utilization)
  are the same quantities computed online: they must match the log to round-off.

These run on the replications the queueing tests simulate (shared session fixture), every one of
them, so nothing is simulated twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

EXACT = 1e-9  # relative: floating-point summation order is the only difference allowed
SCENARIOS = ["mm1", "jackson"]


@dataclass
class SamplePath:
    """What the checks need from one replication's event log (the log itself is dropped)."""

    T: float
    a: np.ndarray  # arrival (create) time per unit
    d: np.ndarray  # departure (complete/scrap) time per unit, ∞ if inside at T
    times: np.ndarray  # times of the create/complete/scrap events, in log order
    n_after: np.ndarray  # N(t) just after each of them
    completions: np.ndarray  # time of each ``complete`` event
    sojourn: np.ndarray  # time in the plant of the unit of each ``complete`` event
    scraps: np.ndarray  # time of each ``scrap`` event
    busy: pd.DataFrame  # equipment, start, end of every service (see busy_intervals)


def sample_path(path, T: float) -> SamplePath:
    """Per-unit arrival/departure times and the piecewise-constant N(t) from an event log."""
    ev = pd.read_parquet(path, columns=["time_s", "kind", "entity", "unit_id", "detail"])
    t = ev["time_s"].to_numpy()
    assert np.all(np.diff(t) >= 0), "event log is not in time order"
    assert t.size and t[0] >= 0 and t[-1] <= T
    created = ev[ev.kind == "create"]
    left = ev[ev.kind.isin(["complete", "scrap"])]
    assert created.unit_id.is_unique, "a unit was created twice"
    assert left.unit_id.is_unique, "a unit left the plant twice"
    a = created.set_index("unit_id")["time_s"]
    d = left.set_index("unit_id")["time_s"]
    assert d.index.isin(a.index).all(), "a unit left without being created"
    d = d.reindex(a.index, fill_value=math.inf)
    assert (d.to_numpy() >= a.to_numpy()).all(), "a unit left before it arrived"
    # N(t) as a step function: +1 at each create, −1 at each departure
    flow = ev[ev.kind.isin(["create", "complete", "scrap"])]
    steps = np.where(flow["kind"].to_numpy() == "create", 1, -1)
    n_after = np.cumsum(steps)
    assert n_after.min() >= 0, "N(t) went negative"
    done = ev[ev.kind == "complete"]
    return SamplePath(
        T=T, a=a.to_numpy(), d=d.to_numpy(), times=flow["time_s"].to_numpy(), n_after=n_after,
        completions=done["time_s"].to_numpy(),
        sojourn=done["time_s"].to_numpy() - a.loc[done.unit_id].to_numpy(),
        scraps=ev.loc[ev.kind == "scrap", "time_s"].to_numpy(),
        busy=busy_intervals(ev))


def integral_N(times, n_after, lo: float, hi: float) -> float:
    """∫_lo^hi N(t) dt for the step function that jumps to n_after[k] at times[k] (N = 0
    before the first event)."""
    edges = np.concatenate([times, [hi]])
    seg_lo = np.clip(edges[:-1], lo, hi)
    seg_hi = np.clip(edges[1:], lo, hi)
    return math.fsum(n_after * (seg_hi - seg_lo))


def busy_intervals(ev: pd.DataFrame) -> pd.DataFrame:
    """(equipment, start, end) of every service: a ``load`` at equipment X ends at the unit's
    next ``unload`` (entity X) or ``complete``/``scrap`` (detail X); ∞ if still in service.
    Valid when no server is ever blocked (unbounded buffers), as in the scenarios used here."""
    mv = ev[ev.kind.isin(["load", "unload", "complete", "scrap"])].copy()
    mv["by"] = np.where(mv.kind.isin(["complete", "scrap"]), mv.detail, mv.entity)
    g = mv.groupby("unit_id", sort=False)
    mv["next_kind"] = g["kind"].shift(-1)
    mv["next_time"] = g["time_s"].shift(-1)
    mv["next_by"] = g["by"].shift(-1)
    loads = mv[mv.kind == "load"]
    done = loads.next_kind.notna()
    assert (loads.next_kind[done] != "load").all(), "a unit was loaded twice without leaving"
    assert (loads.next_by[done] == loads.entity[done]).all(), "unit left a machine it wasn't in"
    return pd.DataFrame({"equipment": loads.entity.to_numpy(),
                         "start": loads.time_s.to_numpy(),
                         "end": loads.next_time.fillna(math.inf).to_numpy()})


@pytest.fixture(scope="module", params=SCENARIOS)
def paths(request, replications):
    """(Replications, [(summary, SamplePath) per replication]) for each scenario."""
    reps = replications(request.param)
    out = []
    for summary, out_dir in zip(reps.summaries, reps.out_dirs):
        T = summary["simulated_s"]
        assert T == summary["horizon_s"]
        out.append((summary, sample_path(out_dir / "events.parquet", T)))
    return reps, out


def test_sample_path_identity_whole_run(paths):
    for _, p in paths[1]:
        lhs = integral_N(p.times, p.n_after, 0.0, p.T)
        rhs = math.fsum(np.minimum(p.d, p.T) - p.a)
        assert lhs > 0
        assert lhs == pytest.approx(rhs, rel=EXACT)


def test_sample_path_identity_after_warmup(paths):
    for s, p in paths[1]:
        w, T = s["warmup_s"], p.T
        lhs = integral_N(p.times, p.n_after, w, T)
        rhs = math.fsum(np.maximum(np.minimum(p.d, T) - np.maximum(p.a, w), 0.0))
        assert lhs == pytest.approx(rhs, rel=EXACT)


def test_littles_law_after_warmup(paths):
    """L̂ = λ̂·Ŵ on [w, T]: λ̂ = arrivals in the window/(T − w), Ŵ = mean sojourn of those of them
    that left by T. The gap is exactly the edge work (time in the window of units that arrived
    before w, and the censoring at T), which is bounded here; and it must be below 1 %."""
    for s, p in paths[1]:
        w, T = s["warmup_s"], p.T
        a, d = p.a, p.d
        span = T - w
        L = integral_N(p.times, p.n_after, w, T) / span
        arrived = a >= w
        lam = arrived.sum() / span
        finished = arrived & (d <= T)
        W = float(np.mean(d[finished] - a[finished]))
        before = a < w
        edge_in = math.fsum(np.maximum(np.minimum(d[before], T) - w, 0.0)) / span
        censored = arrived & (d > T)
        edge_out = (math.fsum(T - a[censored]) + censored.sum() * W) / span
        assert abs(L - lam * W) <= edge_in + edge_out + EXACT * L
        assert lam * W == pytest.approx(L, rel=0.01)


def test_wip_kpi_matches_log(paths):
    """summary wip_mean is the online time-average of the same N(t) over [w, T]."""
    for s, p in paths[1]:
        w, T = s["warmup_s"], p.T
        assert s["wip_mean"] == pytest.approx(integral_N(p.times, p.n_after, w, T) / (T - w),
                                              rel=EXACT)


def test_completion_kpis_match_log(paths):
    """units_completed, throughput and the lead-time mean/max count the units that left at a
    product sink at or after the warm-up."""
    for s, p in paths[1]:
        w, T = s["warmup_s"], p.T
        after = p.completions >= w
        n = int(after.sum())
        assert s["units_completed"] == n
        assert s["units_scrapped"] == int((p.scraps >= w).sum())
        assert s["throughput_per_h"] == pytest.approx(n / (T - w) * 3600.0, rel=EXACT)
        soj = p.sojourn[after]
        assert s["lead_time_s"]["mean"] == pytest.approx(math.fsum(soj) / n, rel=EXACT)
        assert s["lead_time_s"]["max"] == pytest.approx(soj.max(), rel=EXACT)


def test_utilization_kpi_matches_log(paths):
    """Utilization = busy server-seconds in [w, T] / (servers × (T − w)), busy meaning between
    a unit's load and its departure from the machine (no blocking in these scenarios)."""
    reps, runs = paths
    scen = reps.scenario
    for b in scen.buffers.values():
        assert b.capacity_units is None
    for e in scen.equipment.values():
        assert e.changeover is None and not e.failures
    for s, p in runs:
        w, T = s["warmup_s"], p.T
        iv = p.busy
        busy = np.maximum(np.minimum(iv.end, T) - np.maximum(iv.start, w), 0.0)
        for name, e in scen.equipment.items():
            mine = (iv.equipment == name).to_numpy()
            # never more than `servers` units in service at once
            ts = np.concatenate([iv.start[mine], iv.end[mine]])
            dn = np.concatenate([np.ones(mine.sum()), -np.ones(mine.sum())])
            order = np.lexsort((dn, ts))  # at equal times, ends before starts
            assert np.cumsum(dn[order]).max() <= e.servers
            util = math.fsum(busy[mine]) / (e.servers * (T - w))
            assert s["equipment"][name]["utilization"] == pytest.approx(util, rel=EXACT)


def test_material_balance_through_transformations(run):
    """On a line that transforms, packs, rejects and aborts (packaging-line, two days), units
    are born at a source (``create``) or by a transformation (genealogy child) and die at a sink
    (``complete``/``scrap``) or when consumed (genealogy parent). The event log plus the
    genealogy table must close that balance, satisfy the sample-path identity, and give the
    summary's wip_mean."""
    res = run("packaging-line", ["scenario.horizon_s=172800.0", "scenario.warmup_s=43200.0"])
    s = res.summary
    T, w = s["simulated_s"], s["warmup_s"]
    ev = pd.read_parquet(res.out_dir / "events.parquet", columns=["time_s", "kind", "unit_id"])
    gen = pd.read_parquet(res.out_dir / "genealogy.parquet",
                          columns=["time_s", "child_id", "parent_id", "equipment"])
    assert len(gen) and s["units_scrapped"] > 0, "scenario no longer exercises the balance"
    # a parent is consumed once: all its genealogy rows share one time and one machine
    per_parent = gen.groupby("parent_id").agg(t=("time_s", "nunique"), m=("equipment", "nunique"))
    assert (per_parent.t == 1).all() and (per_parent.m == 1).all()
    born = pd.concat([ev.loc[ev.kind == "create", ["unit_id", "time_s"]],
                      gen.drop_duplicates("child_id").rename(columns={"child_id": "unit_id"})
                      [["unit_id", "time_s"]]])
    died = pd.concat([ev.loc[ev.kind.isin(["complete", "scrap"]), ["unit_id", "time_s"]],
                      gen.drop_duplicates("parent_id").rename(columns={"parent_id": "unit_id"})
                      [["unit_id", "time_s"]]])
    assert born.unit_id.is_unique, "a unit was born twice"
    assert died.unit_id.is_unique, "a unit left or was consumed twice"
    a = born.set_index("unit_id")["time_s"]
    d = died.set_index("unit_id")["time_s"]
    assert d.index.isin(a.index).all(), "a unit died without being born"
    d = d.reindex(a.index, fill_value=math.inf)
    assert (d.to_numpy() >= a.to_numpy()).all()
    flow = pd.concat([pd.DataFrame({"time_s": a.to_numpy(), "dn": 1}),
                      pd.DataFrame({"time_s": d[np.isfinite(d)].to_numpy(), "dn": -1})])
    flow = flow.sort_values(["time_s", "dn"], ascending=[True, False], kind="stable")
    times, n_after = flow.time_s.to_numpy(), np.cumsum(flow.dn.to_numpy())
    assert n_after.min() >= 0, "N(t) went negative"
    lhs = integral_N(times, n_after, 0.0, T)
    assert lhs == pytest.approx(math.fsum(np.minimum(d.to_numpy(), T) - a.to_numpy()), rel=EXACT)
    assert s["wip_mean"] == pytest.approx(integral_N(times, n_after, w, T) / (T - w), rel=EXACT)
