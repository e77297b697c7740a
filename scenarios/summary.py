"""Assemble the run's KPIs (ISO 22400-2 names) from the plant's online accumulators.

Formulas are in :mod:`darkfab.factory.kpis`; this module reads them off the agents after the
run and shapes ``summary.json`` and the tidy KPI table.
"""

from __future__ import annotations

import math

from darkfab.factory.kpis import finite, ratio
from darkfab.factory.packml import State

from .builder import Plant

__all__ = ["equipment_kpis", "plant_kpis", "kpi_rows", "bottleneck_resources"]


def equipment_kpis(plant: Plant, end: float) -> dict[str, dict]:
    warm = plant.model.warmup_s
    out = {}
    for name, eq in plant.equipment.items():
        observed = max(end - warm, 0.0)
        planned_down = eq.condition.time_s.get("planned_downtime", 0.0)
        pbt = eq.servers * (observed - planned_down)
        apt = sum(t.time_s.get("busy", 0.0) for t in eq._server_time)
        aust = sum(t.time_s.get("setup", 0.0) for t in eq._server_time)
        availability = ratio(apt, pbt)
        performance = ratio(eq.ideal_cycle_time_s * eq.cycles, apt)
        quality = ratio(eq.units_good, eq.units_out)
        cond = eq.condition.time_s
        out[name] = {
            "utilization": ratio(apt + aust, pbt),
            "availability": availability,
            "performance": performance,
            "quality": quality,
            "oee": availability * performance * quality,
            "cycles": eq.cycles,
            "units_out": eq.units_out,
            "units_good": eq.units_good,
            "faults": eq.faults,
            "commands_rejected": eq.commands_rejected,
            "actual_production_time_s": apt,
            "setup_time_s": aust,
            "starved_s": cond.get("starved", 0.0),
            "blocked_s": cond.get("blocked", 0.0),
            "down_s": cond.get("down", 0.0),
            "mean_active_period_s": eq.active.mean(end),
            "active_share": ratio(eq.active.active_time(end), observed),
            "state_time_s": {s.value: eq.state_time.time_s.get(s.value, 0.0) for s in State},
        }
    return out


def plant_kpis(plant: Plant, end: float) -> dict:
    m = plant.model
    observed = end - m.warmup_s
    eq = equipment_kpis(plant, end)
    ranking = sorted(eq, key=lambda n: (-eq[n]["mean_active_period_s"], n))
    transport = (plant.transport.resources(end, max(observed, 0.0))
                 if plant.transport is not None else {})
    lt = m.lead_time
    return {
        "throughput_per_h": ratio(m.units_completed, observed) * 3600.0,
        "units_completed": m.units_completed,
        "units_scrapped": m.units_scrapped,
        "wip_mean": m.wip.mean(end),
        "lead_time_s": {"mean": lt.mean(), "p50": lt.quantile(0.5), "p95": lt.quantile(0.95),
                        "max": lt.max if lt.n else math.nan},
        "equipment": eq,
        "buffers": {n: {"level_mean": lvl.mean(end), "level_end": plant.buffers[n].level}
                    for n, lvl in plant.buffer_levels.items()},
        "bottleneck_ranking": ranking,
        "bottlenecks": bottleneck_resources(eq, transport),
        **(fleet_kpis(plant, end) if plant.fleet is not None else {}),
        **({"controller": plant.control.summary()} if getattr(plant, "control", None) else {}),
        **(line_kpis(plant, end) if plant.lines else {}),
        **({"orders": {n: b.kpis(end) for n, b in plant.order_books.items()}}
           if plant.order_books else {}),
        **({"containment": plant.containment.summary()}
           if getattr(plant, "containment", None) is not None else {}),
        "alarms": m.alarms.kpis(end),
    }


def bottleneck_resources(equipment: dict[str, dict], transport: dict[str, dict]
                         ) -> list[dict]:
    """Machines and transport resources (fleet, lanes, chargers) ranked by the active-period
    method (:mod:`darkfab.factory.transport_activity`): longest mean active period first."""
    rows = [{"resource": n, "kind": "machine",
             "mean_active_period_s": k["mean_active_period_s"],
             "active_share": k["active_share"]} for n, k in equipment.items()]
    rows += [{"resource": n, **r} for n, r in transport.items()]
    rows.sort(key=lambda r: (-r["mean_active_period_s"], r["resource"]))
    return [{**r, "rank": i + 1} for i, r in enumerate(rows)]


def line_kpis(plant: Plant, end: float) -> dict:
    """Continuous lines' KPIs, and the worst relative mass-balance error of any line
    (fed = accepted + diverted + hold-up + QC samples; should be below 1e-9)."""
    lines = {name: line.kpis(end) for name, line in plant.lines.items()}
    return {"continuous_lines": lines,
            "mass_balance_rel_error": max(k["mass_balance"]["rel_error"]
                                          for k in lines.values())}


def fleet_kpis(plant: Plant, end: float) -> dict:
    """Per-robot and fleet KPIs after warm-up, and lane usage (traversals per lane)."""
    f = plant.fleet
    assert f is not None
    warm = plant.model.warmup_s
    observed = max(end - warm, 0.0)
    busy_states = ("travel_empty", "travel_loaded", "waiting_traffic", "loading", "unloading")
    robots = {}
    for name, r in plant.robots.items():
        t = r.timer.time_s
        dist = r.distance_m["empty"] + r.distance_m["loaded"]
        b = r.battery
        robots[name] = {
            "utilization": ratio(sum(t.get(x, 0.0) for x in busy_states), observed),
            "empty_travel_share": ratio(r.distance_m["empty"], dist),
            "traffic_wait_s": t.get("waiting_traffic", 0.0),
            "distance_m": dist,
            "energy_kwh": b.drawn_travel_kwh + b.drawn_base_kwh,
            "charged_kwh": b.charged_kwh,
            "soc_end": b.soc,
            "tasks": r.tasks_done,
            "stalls": r.stalls,
            "state_time_s": dict(sorted(t.items())),
        }
    n = len(robots) or 1
    lt = f.lead_time
    tot = sum(r["distance_m"] for r in robots.values())
    fleet = {
        "robots": len(robots),
        "utilization": sum(r["utilization"] for r in robots.values()) / n,
        "empty_travel_share": ratio(sum(r.distance_m["empty"] for r in plant.robots.values()),
                                    tot),
        "traffic_wait_s": sum(r["traffic_wait_s"] for r in robots.values()),
        "energy_kwh": sum(r["energy_kwh"] for r in robots.values()),
        "tasks_requested": f.tasks_requested,
        "tasks_delivered": f.tasks_delivered,
        "tasks_per_h": ratio(lt.n, observed) * 3600.0,
        "transport_lead_time_s": {"mean": lt.mean(), "p50": lt.quantile(0.5),
                                  "p95": lt.quantile(0.95)},
        "deadlocks_resolved": f.deadlocks,
        "trips_abandoned_low_battery": f.abandoned,
        "charger_preemptions": f.charger_preemptions,
        "backoffs": f.backoffs,
        "task_allocation": f.allocation,
        "traffic": "reservations" if f.traffic else "none",
    }
    lanes = [{"a": k[1], "b": k[2], "usage": u} for k, u in sorted(f.lane_usage.items())]
    arms = {name: {"moves": a.moves, "utilization": ratio(a.busy_s, observed)}
            for name, a in plant.arms.items()}
    out = {"robots": robots, "fleet": fleet, "lanes": lanes}
    if plant.transport is not None:
        out["layout_use"] = plant.transport.usage(end)
    if arms:
        out["arms"] = arms
    return out


_UNITS = {"utilization": "1", "availability": "1", "performance": "1", "quality": "1",
          "oee": "1", "cycles": "count", "units_out": "count", "units_good": "count",
          "faults": "count", "commands_rejected": "count"}


_ALARM_UNITS = {"raised": "count", "per_hour_per_operator": "1/h",
                "per_10min_per_operator": "1/(10 min)", "peak_per_window": "count",
                "floods": "count", "time_in_flood_pct": "%", "windows_over_threshold_pct": "%",
                "standing_end": "count", "standing_max": "count", "acknowledged": "count",
                "cleared_unacknowledged": "count", "mean_time_to_acknowledge_s": "s"}


def kpi_rows(k: dict) -> list[tuple]:
    """Tidy rows (scope, kpi, value, unit) for ``kpis.parquet``."""
    rows = [
        ("plant", "throughput_per_h", k["throughput_per_h"], "units/h"),
        ("plant", "units_completed", k["units_completed"], "count"),
        ("plant", "units_scrapped", k["units_scrapped"], "count"),
        ("plant", "wip_mean", k["wip_mean"], "units"),
    ]
    rows += [("plant", f"lead_time_{q}", v, "s") for q, v in k["lead_time_s"].items()]
    for name, e in k["equipment"].items():
        for kpi, v in e.items():
            if kpi == "state_time_s":
                rows += [(name, f"time_in_{st}", t, "s") for st, t in v.items()]
            else:
                rows.append((name, kpi, v, _UNITS.get(kpi, "s")))
        rows.append((name, "bottleneck_rank", k["bottleneck_ranking"].index(name) + 1, "rank"))
    for name, b in k["buffers"].items():
        rows += [(name, kpi, v, "units") for kpi, v in b.items()]
    a = k.get("alarms")
    if a is not None:
        rows += [("alarms", kpi, a[kpi], unit) for kpi, unit in _ALARM_UNITS.items()]
    for name, o in k.get("orders", {}).items():
        rows += [(name, kpi, v, "s" if kpi.endswith("_s") else "1" if kpi.endswith("fraction")
                  else "count") for kpi, v in o.items() if not isinstance(v, str)]
    return [(s, kpi, None if v is None else float(finite(v)) if finite(v) is not None else None,
             u) for s, kpi, v, u in rows]
