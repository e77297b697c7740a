"""Assemble the run's KPIs (ISO 22400-2 names) from the plant's online accumulators.

Formulas are in :mod:`darkfab.factory.kpis`; this module reads them off the agents after the
run and shapes ``summary.json`` and the tidy KPI table.
"""

from __future__ import annotations

import math

from darkfab.factory.kpis import finite, ratio
from darkfab.factory.packml import State

from .builder import Plant

__all__ = ["equipment_kpis", "plant_kpis", "kpi_rows"]


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
            "state_time_s": {s.value: eq.state_time.time_s.get(s.value, 0.0) for s in State},
        }
    return out


def plant_kpis(plant: Plant, end: float) -> dict:
    m = plant.model
    observed = end - m.warmup_s
    eq = equipment_kpis(plant, end)
    ranking = sorted(eq, key=lambda n: (-eq[n]["mean_active_period_s"], n))
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
    }


_UNITS = {"utilization": "1", "availability": "1", "performance": "1", "quality": "1",
          "oee": "1", "cycles": "count", "units_out": "count", "units_good": "count",
          "faults": "count", "commands_rejected": "count"}


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
    return [(s, kpi, None if v is None else float(finite(v)) if finite(v) is not None else None,
             u) for s, kpi, v, u in rows]
