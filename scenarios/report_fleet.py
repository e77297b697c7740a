"""The fleet section of a run report: robot state shares, transport lead times, lane
occupancy and traffic waiting on the layout, charger use, and the bottleneck ranking across
machines and transport.

Each part is a pair: a function that gathers plain data from ``summary.json`` (and
``transport.parquet``, a few thousand rows a week) and a function that draws it on a
:class:`matplotlib.figure.Figure`. :func:`fleet_data` gathers everything,
:func:`fleet_section` turns it into a small HTML fragment (headings, figures as data URIs,
tables), so the fragment can later come from a template fed by the same data.

Sources: ``summary["robots"][r]["state_time_s"]`` (robot states after warm-up),
``summary["layout_use"]`` (mean robots per lane and crossing, seconds full, robot-seconds of
traffic waiting per node, charging seconds per charger; see
:meth:`darkfab.factory.transport_activity.TransportActivity.usage`), ``summary["bottlenecks"]``
and the trips of ``transport.parquet`` requested after warm-up and delivered.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .report_html import duration, esc, figure_html, fmt, num, table
from .report_layout import layout_figure

__all__ = ["ROBOT_STATE_COLOURS", "fleet_data", "fleet_section", "bottleneck_section",
           "robot_states_figure",
           "lead_time_figure", "layout_use_figure", "bottleneck_rows"]

ROBOT_STATE_COLOURS = {"travel_loaded": "#2ca02c", "loading": "#98df8a",
                       "unloading": "#bcbd22", "travel_empty": "#1f77b4",
                       "waiting_traffic": "#d62728", "charging": "#f2c12e",
                       "failed": "#7f0000", "idle": "#c7c7c7"}
"""Colour per robot state, in the order of the bars: loaded work first, idle last."""


def fleet_data(folder: Path, s: dict[str, Any]) -> dict[str, Any] | None:
    """Everything the fleet section shows, as plain data; ``None`` for a run without robots.

    Keys: ``robots`` (robot → state → share of its observed time), ``fleet`` (the summary's
    fleet KPIs), ``lead_times`` (route ``origin → destination`` → array of lead times in s,
    requested after warm-up), ``places`` and ``waiting_s`` and ``charging_s`` (from
    ``layout_use``), ``observed_s``."""
    robots = s.get("robots") or {}
    if not robots:
        return None
    shares = {}
    for name, r in robots.items():
        t = {k: float(v) for k, v in (r.get("state_time_s") or {}).items() if num(v)}
        total = sum(t.values())
        shares[name] = {k: v / total for k, v in t.items()} if total > 0 else {}
    use = s.get("layout_use") or {}
    observed = max((num(s.get("simulated_s")) or 0.0) - (num(s.get("warmup_s")) or 0.0), 0.0)
    return {"robots": shares, "fleet": s.get("fleet") or {},
            "lead_times": read_lead_times(folder / "transport.parquet",
                                          num(s.get("warmup_s")) or 0.0),
            "places": use.get("places") or {}, "waiting_s": use.get("waiting_s") or {},
            "charging_s": use.get("charging_s") or {}, "observed_s": observed}


def read_lead_times(path: Path, warmup_s: float) -> dict[str, np.ndarray]:
    """Lead time (delivered − requested, s) of each delivered trip requested after warm-up,
    per route ``origin → destination``."""
    if not path.is_file():
        return {}
    t = pq.read_table(path, columns=["origin", "destination", "requested_s", "delivered_s",
                                     "status"])
    out: dict[str, list[float]] = {}
    for o, d, req, dlv, st in zip(*(t.column(c).to_pylist() for c in t.column_names)):
        if st == "delivered" and req is not None and dlv is not None and req >= warmup_s:
            out.setdefault(f"{o} → {d}", []).append(dlv - req)
    return {k: np.asarray(v) for k, v in sorted(out.items())}


# --- figures ------------------------------------------------------------------------------
def robot_states_figure(shares: dict[str, dict[str, float]]) -> Figure:
    """One horizontal bar per robot: the share of each state after warm-up."""
    names = list(shares)[::-1]
    states = [st for st in ROBOT_STATE_COLOURS if any(st in shares[n] for n in names)]
    states += sorted({st for n in names for st in shares[n]} - set(states))
    fig = Figure(figsize=(10, 1.2 + 0.42 * len(names)))
    ax = fig.subplots()
    left = np.zeros(len(names))
    for st in states:
        vals = np.array([100.0 * shares[n].get(st, 0.0) for n in names])
        ax.barh(names, vals, left=left, color=ROBOT_STATE_COLOURS.get(st, "#9467bd"),
                edgecolor="white", linewidth=0.5, label=st)
        for y, (l0, v) in enumerate(zip(left, vals)):
            if v >= 7:
                ax.text(l0 + v / 2, y, f"{v:.0f}%", ha="center", va="center", fontsize=8)
        left += vals
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of observed time (%)")
    ax.legend(ncols=min(len(states), 8), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.16 if len(names) > 3 else -0.4), frameon=False)
    return fig


def lead_time_figure(lead_times: dict[str, np.ndarray]) -> Figure:
    """Histogram (log-spaced bins) of the transport lead times per route, with the median
    and the 95th percentile marked."""
    fig = Figure(figsize=(10, 3.6))
    ax = fig.subplots()
    values = np.concatenate([v for v in lead_times.values() if len(v)])
    lo, hi = max(float(values.min()), 1.0), max(float(values.max()), 2.0)
    bins = np.geomspace(lo, hi * 1.001, 40)
    for i, (route, v) in enumerate(lead_times.items()):
        if not len(v):
            continue
        colour = f"C{i % 10}"
        ax.hist(np.clip(v, lo, None), bins=bins, histtype="stepfilled", alpha=0.35,
                color=colour, label=f"{route} (n = {len(v):,})")
        for q, ls in ((50, "-"), (95, "--")):
            ax.axvline(float(np.percentile(v, q)), color=colour, ls=ls, lw=1.2)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(
        lambda x, _p: f"{x:g}" if str(int(round(x)))[0] in "25" else ""))
    ax.set_xlabel("transport lead time, request to delivery (s, log scale)")
    ax.set_ylabel("trips")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return fig


def layout_use_figure(s: dict[str, Any], places: dict[str, dict],
                      waiting_s: dict[str, float], observed_s: float
                      ) -> tuple[Figure, str] | None:
    """The layout with each lane coloured by its mean number of robots (occupancy) and a red
    ring around each node whose area gives the robot-hours of traffic waiting there."""
    lanes = {(p["a"], p["b"]): float(p["occupancy_mean"]) for p in places.values()
             if p.get("kind") == "lane" and num(p.get("occupancy_mean")) is not None}
    made = layout_figure(s, "names", lane_values=lanes,
                         lane_label="lane occupancy (mean robots on the lane)",
                         node_values={n: v / 3600.0 for n, v in waiting_s.items()},
                         node_label="traffic waiting (ring area ∝ robot-hours)")
    if made is None:
        return None
    fig, _ = made
    cap = ("Lane occupancy heat map: each lane coloured and thickened by the mean number of "
           "robots holding it after warm-up (a robot holds the lanes of a leg from the moment "
           "it sets off on it); a red ring's area is proportional to the robot-hours spent "
           "waiting for traffic at that node.")
    return fig, cap


# --- tables -------------------------------------------------------------------------------
def bottleneck_rows(s: dict[str, Any], limit: int = 10) -> list[dict]:
    """The first ``limit`` rows of the combined bottleneck ranking (machines and transport)."""
    return list(s.get("bottlenecks") or [])[:limit]


def _busiest_places(places: dict[str, dict], observed_s: float, limit: int = 8
                    ) -> list[list[str]]:
    rows = sorted(places.items(), key=lambda kv: -(num(kv[1].get("occupancy_mean")) or 0.0))
    out = []
    for name, p in rows[:limit]:
        full = (num(p.get("full_s")) or 0.0) / observed_s if observed_s > 0 else math.nan
        out.append([esc(name), esc(p.get("kind")), fmt(p.get("capacity_robots")),
                    fmt(p.get("occupancy_mean")), fmt(full, "pct")])
    return out


# --- HTML ---------------------------------------------------------------------------------
def bottleneck_section(s: dict[str, Any]) -> str:
    """The combined bottleneck ranking as an HTML fragment (empty without ``bottlenecks``)."""
    rows = bottleneck_rows(s)
    if not rows:
        return ""
    top = rows[0]
    what = ("the transport system" if top["kind"] != "machine" else "a machine")
    cells = [[str(r["rank"]), esc(r["resource"]) + (" <b>(bottleneck)</b>" if i == 0 else ""),
              esc(r["kind"]), fmt(r.get("mean_active_period_s"), "dur"),
              fmt(r.get("active_share"), "pct")] for i, r in enumerate(rows)]
    return ("<h3>Bottleneck: machines and transport</h3>"
            f"<p>The bottleneck is <b>{esc(top['resource'])}</b> ({what}).</p>"
            + table(["rank", "resource", "kind", "mean active period", "active"], cells,
                    left=3, row_classes=["hi"] + [""] * (len(cells) - 1))
            + '<p class="note">Active-period method (Roser, Nakano &amp; Tanaka, WSC 2001): '
            "the resource with the longest mean uninterrupted active period constrains the "
            "plant most. A machine is active unless starved or blocked; a transport route while "
            "it has a trip requested and not delivered; the fleet while no robot is idle; a "
            "lane or crossing while full; the chargers while all charge. First "
            f"{len(cells)} of {len(s.get('bottlenecks') or [])} resources.</p>")


def fleet_section(folder: Path, s: dict[str, Any], number: int = 6) -> str:
    """The report's fleet section (heading ``number``), or a note for a run without robots."""
    head = f"<h2>{number}. Fleet</h2>"
    data = fleet_data(folder, s)
    if data is None:
        return head + '<p class="note">No robots in this run.</p>'
    f, obs = data["fleet"], data["observed_s"]
    parts = [head, table(["fleet KPI", "value"], [
        ["robots", fmt(f.get("robots"))], ["utilization", fmt(f.get("utilization"), "pct")],
        ["trips per hour", fmt(f.get("tasks_per_h"))],
        ["empty travel (share of distance)", fmt(f.get("empty_travel_share"), "pct")],
        ["traffic waiting, all robots", fmt(f.get("traffic_wait_s"), "dur")],
        ["deadlocks resolved", fmt(f.get("deadlocks_resolved"))]], left=1)]
    parts.append("<h3>Robot states</h3>")
    if any(data["robots"].values()):
        parts.append(figure_html(robot_states_figure(data["robots"]),
                                 "Share of each robot's time after warm-up in each state.",
                                 "robot state shares"))
    lts = data["lead_times"]
    parts.append("<h3>Transport lead time</h3>")
    if any(len(v) for v in lts.values()):
        parts.append(figure_html(lead_time_figure(lts), "Lead time of each delivered trip "
                                 "requested after warm-up, per route; solid line: median, "
                                 "dashed: 95th percentile.", "transport lead times"))
        parts.append(table(["route", "trips", "mean", "p50", "p95", "max"], [
            [esc(r), fmt(len(v)), fmt(float(v.mean()), "dur"),
             fmt(float(np.percentile(v, 50)), "dur"), fmt(float(np.percentile(v, 95)), "dur"),
             fmt(float(v.max()), "dur")] for r, v in lts.items() if len(v)], left=1))
    else:
        parts.append('<p class="note">No delivered trips after warm-up '
                     "(or no transport.parquet).</p>")
    parts.append("<h3>Lane occupancy and traffic waiting</h3>")
    made = layout_use_figure(s, data["places"], data["waiting_s"], obs)
    if made is not None and data["places"]:
        parts.append(figure_html(made[0], made[1], "lane occupancy heat map"))
        parts.append(table(["lane or crossing", "kind", "capacity", "mean robots", "full"],
                           _busiest_places(data["places"], obs), left=2))
        waits = sorted(data["waiting_s"].items(), key=lambda kv: -kv[1])[:8]
        if waits:
            parts.append(table(["node", "traffic waiting (robot-time)"],
                               [[esc(n), esc(duration(v))] for n, v in waits], left=1))
    else:
        parts.append('<p class="note">No lane use recorded (summary.json has no '
                     "<code>layout_use</code>).</p>")
    ch = data["charging_s"]
    parts.append("<h3>Chargers</h3>")
    if ch:
        parts.append(table(["charger", "charging", "share of observed time"],
                           [[esc(c), esc(duration(v)), fmt(v / obs if obs > 0 else None, "pct")]
                            for c, v in ch.items()], left=1))
    else:
        parts.append('<p class="note">No chargers in this layout.</p>')
    return "\n".join(parts)
