"""Little's law and KPI bookkeeping checked on the event log itself (DOMAIN.md §1).

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

import numpy as np
import pandas as pd
import pytest

EXACT = 1e-9  # relative: floating-point summation order is the only difference allowed
SCENARIOS = ["mm1", "jackson"]


def sample_path(path, T: float):
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
    times = flow["time_s"].to_numpy()
    steps = np.where(flow["kind"].to_numpy() == "create", 1, -1)
    n_after = np.cumsum(steps)
    assert n_after.min() >= 0, "N(t) went negative"
    return ev, a.to_numpy(), d.to_numpy(), times, n_after


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
    """(scenario key, Replications, per-replication sample paths) for each scenario."""
    reps = replications(request.param)
    out = []
    for summary, out_dir in zip(reps.summaries, reps.out_dirs):
        T = summary["simulated_s"]
        assert T == summary["horizon_s"]
        out.append((summary, T, sample_path(out_dir / "events.parquet", T)))
    return request.param, reps, out


def test_sample_path_identity_whole_run(paths):
    _, _, runs = paths
    for _, T, (_, a, d, times, n_after) in runs:
        lhs = integral_N(times, n_after, 0.0, T)
        rhs = math.fsum(np.minimum(d, T) - a)
        assert lhs == pytest.approx(rhs, rel=EXACT)
        assert lhs > 0


def test_sample_path_identity_after_warmup(paths):
    _, _, runs = paths
    for s, T, (_, a, d, times, n_after) in runs:
        w = s["warmup_s"]
        lhs = integral_N(times, n_after, w, T)
        rhs = math.fsum(np.maximum(np.minimum(d, T) - np.maximum(a, w), 0.0))
        assert lhs == pytest.approx(rhs, rel=EXACT)


def test_littles_law_after_warmup(paths):
    """L̂ = λ̂·Ŵ on [w, T]: λ̂ = arrivals in the window/(T − w), Ŵ = mean sojourn of those of them
    that left by T. The gap is the edge effect: units inside at w (counted in L̂, not in λ̂Ŵ)
    minus the censored ones at T; bound it by the actual edge work, and by 1 % outright."""
    _, _, runs = paths
    for s, T, (_, a, d, times, n_after) in runs:
        w = s["warmup_s"]
        span = T - w
        L = integral_N(times, n_after, w, T) / span
        arrived = (a >= w) & (a <= T)
        lam = arrived.sum() / span
        finished = arrived & (d <= T)
        W = float(np.mean(d[finished] - a[finished]))
        # edge work: time spent in [w, T] by units that arrived before w, and the time after T
        # that censored units would still need (their observed part is at most T - a_i)
        before = a < w
        edge_in = math.fsum(np.maximum(np.minimum(d[before], T) - w, 0.0)) / span
        censored = arrived & (d > T)
        edge_out = (math.fsum(T - a[censored]) + censored.sum() * W) / span
        assert abs(L - lam * W) <= edge_in + edge_out + EXACT * L
        assert lam * W == pytest.approx(L, rel=0.01)


def test_wip_kpi_matches_log(paths):
    """summary wip_mean is the online time-average of the same N(t) over [w, T]."""
    _, _, runs = paths
    for s, T, (_, _, _, times, n_after) in runs:
        w = s["warmup_s"]
        assert s["wip_mean"] == pytest.approx(integral_N(times, n_after, w, T) / (T - w),
                                              rel=EXACT)


def test_completion_kpis_match_log(paths):
    """units_completed, throughput and the lead-time mean/max count the units that left at a
    product sink at or after the warm-up."""
    _, _, runs = paths
    for s, T, (ev, a, d, _, _) in runs:
        w = s["warmup_s"]
        done = ev[(ev.kind == "complete") & (ev.time_s >= w)]
        assert s["units_completed"] == len(done)
        assert s["units_scrapped"] == int(((ev.kind == "scrap") & (ev.time_s >= w)).sum())
        assert s["throughput_per_h"] == pytest.approx(len(done) / (T - w) * 3600.0, rel=EXACT)
        created = ev[ev.kind == "create"].set_index("unit_id")["time_s"]
        sojourn = done["time_s"].to_numpy() - created.loc[done.unit_id].to_numpy()
        assert s["lead_time_s"]["mean"] == pytest.approx(math.fsum(sojourn) / len(sojourn),
                                                         rel=EXACT)
        assert s["lead_time_s"]["max"] == pytest.approx(sojourn.max(), rel=EXACT)


def test_utilization_kpi_matches_log(paths):
    """Utilization = busy server-seconds in [w, T] / (servers × (T − w)), busy meaning between
    a unit's load and its departure from the machine (no blocking in these scenarios)."""
    _, reps, runs = paths
    scen = reps.scenario
    for s in scen.buffers.values():
        assert s.capacity_units is None
    for e in scen.equipment.values():
        assert e.changeover is None and not e.failures
    for s, T, (ev, _, _, _, _) in runs:
        w = s["warmup_s"]
        iv = busy_intervals(ev)
        iv["busy"] = np.maximum(np.minimum(iv.end, T) - np.maximum(iv.start, w), 0.0)
        # at most `servers` units in service at once
        for name, e in scen.equipment.items():
            sub = iv[iv.equipment == name]
            ts = np.concatenate([sub.start.to_numpy(), sub.end.to_numpy()])
            dn = np.concatenate([np.ones(len(sub)), -np.ones(len(sub))])
            order = np.lexsort((dn, ts))  # at equal times, ends before starts
            assert np.cumsum(dn[order]).max() <= e.servers
            util = math.fsum(sub.busy) / (e.servers * (T - w))
            assert s["equipment"][name]["utilization"] == pytest.approx(util, rel=EXACT)
