"""Self-contained HTML reports for a run folder or an experiment folder.

:func:`write_report` detects the kind of folder from its ``summary.json`` and writes one HTML
file that opens offline: inline CSS, no scripts, figures embedded as base64 PNG data URIs.

A **run report** shows the plant and per-equipment KPIs (bottleneck first), throughput and WIP
over time with the warm-up marked, the PackML state breakdown per unit, a Gantt chart of states
over a time window, the plant layout (links coloured by lane usage when the summary has a
``lanes`` entry) and, for a run with robots, the fleet section (:mod:`.report_fleet`). An
**experiment report** shows the design, runs ok/failed, the mean and
confidence half-width per design point and KPI, factor-response plots with confidence intervals
and the paired comparisons against the baseline point.

The pieces live in :mod:`.report_html` (page, tables, formats), :mod:`.report_layout` (the
layout figure, ``darkfab plot layout``), :mod:`.report_fleet` and :mod:`.report_experiment`.

Memory stays bounded whatever the horizon: ``events.parquet`` is never read, ``states.parquet``
is read with a time-window filter (row groups outside the window are skipped by their
statistics) and only the columns needed, ``timeseries.parquet`` is a few hundred rows.

Figures are drawn on :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas; pyplot
is never imported, so no global backend is switched and no figure is left open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .report_experiment import experiment_report
from .report_fleet import bottleneck_section, fleet_section
from .report_html import (PACKML_ORDER, STATE_COLOURS, duration, esc, figure_html, fmt, lookup,
                          meta, num, page, read_summary, state_colour, state_order, table,
                          time_unit)
from .report_layout import lane_usage, layout_figure, write_layout_png

__all__ = ["write_report", "gantt_window", "read_states_window", "lane_usage", "layout_figure",
           "write_layout_png", "GANTT_WINDOW_S", "STATE_COLOURS", "PACKML_ORDER"]

STARVED_STATE, BLOCKED_STATE = "Suspended (starved)", "Suspended (blocked)"
GANTT_WINDOW_S = 8 * 3600.0
"""Default Gantt window: the first 8 hours after warm-up (or the whole run if shorter)."""

PLANT_KPIS = (("throughput_per_h", "throughput", "units/h"),
              ("units_completed", "units completed", "units"),
              ("units_scrapped", "units scrapped", "units"),
              ("wip_mean", "WIP (time average)", "units"),
              ("lead_time_s.mean", "lead time, mean", "s"),
              ("lead_time_s.p50", "lead time, p50", "s"),
              ("lead_time_s.p95", "lead time, p95", "s"),
              ("lead_time_s.max", "lead time, max", "s"))
EQUIPMENT_COLUMNS = (("utilization", "utilization", "pct"), ("availability", "availability", "pct"),
                     ("performance", "performance", "pct"), ("quality", "quality", "pct"),
                     ("oee", "OEE", "pct"), ("starved_s", "starved", "dur"),
                     ("blocked_s", "blocked", "dur"), ("down_s", "down", "dur"),
                     ("faults", "faults", "num"))


# --- public API ---------------------------------------------------------------------------
def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write one self-contained HTML file for a run folder or an experiment folder; default
    out = folder / "report.html". Returns the path."""
    folder = Path(folder)
    kind, summary = read_summary(folder)
    body = _run_report(folder, summary) if kind == "run" else experiment_report(folder, summary)
    out_path = Path(out) if out is not None else folder / "report.html"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(body, encoding="utf-8")
    return out_path


# --- run report ---------------------------------------------------------------------------
def _run_report(folder: Path, s: dict[str, Any]) -> str:
    rs = s.get("resolved_scenario") or {}
    scen = rs.get("scenario") or {}
    name = s.get("scenario") or scen.get("name") or "?"
    horizon = num(s.get("horizon_s")) or 0.0
    simulated = num(s.get("simulated_s")) or horizon
    warmup = num(s.get("warmup_s")) or 0.0
    subtitle = (f"scenario <b>{esc(name)}</b> · seed {esc(s.get('seed'))} · replication "
                f"{esc(s.get('replication'))} · horizon {esc(duration(horizon))} · warm-up "
                f"{esc(duration(warmup))}")
    rows = [("run id", f"<code>{esc(s.get('run_id'))}</code>"),
            ("scenario", esc(name)),
            ("description", esc(scen.get("description") or "–")),
            ("seed / replication", f"{esc(s.get('seed'))} / {esc(s.get('replication'))}"),
            ("horizon", f"{fmt(horizon)} s ({esc(duration(horizon))})"),
            ("simulated", f"{fmt(simulated)} s ({esc(duration(simulated))})"),
            ("warm-up", f"{fmt(warmup)} s ({esc(duration(warmup))}); KPIs count only after it"),
            ("events logged", fmt(s.get("events"))),
            ("wall time", esc(duration(num(s.get("wall_s")) or 0.0))),
            ("darkfab version", esc(s.get("darkfab_version", "?"))),
            ("folder", f"<code>{esc(folder.resolve())}</code>")]
    sections = [meta(rows)]
    if s.get("partial"):
        why = esc(s.get("partial_reason") or "interrupted")
        sections.append(f'<p class="warn">Partial run: {why} — KPIs and tables cover only the '
                        "simulated time reached.</p>")
    equipment = s.get("equipment") or {}
    order = _equipment_order(s)
    sections.append(_kpi_section(s, order))
    sections.append(_series_section(folder, warmup, simulated or horizon,
                                    num(s.get("throughput_per_h"))))
    sections.append(_state_breakdown_section(equipment, order))
    sections.append(_gantt_section(folder, order, warmup, simulated or horizon))
    sections.append(_layout_section(s))
    if s.get("robots"):
        sections.append(fleet_section(folder, s, number=6))
    return page(f"darkfab run report — {name}", subtitle, sections)


def _equipment_order(s: dict[str, Any]) -> list[str]:
    equipment = s.get("equipment") or {}
    ranking = [n for n in (s.get("bottleneck_ranking") or []) if n in equipment]
    return ranking + [n for n in equipment if n not in ranking]


def _kpi_section(s: dict[str, Any], order: list[str]) -> str:
    out = ["<h2>1. KPIs (after warm-up)</h2>", "<h3>Plant</h3>"]
    rows = []
    for path, label, unit in PLANT_KPIS:
        v = lookup(s, path)
        if v is None and path.endswith(".max"):
            continue
        extra = f" ({duration(v)})" if unit == "s" and num(v) is not None and v >= 120 else ""
        rows.append([esc(label), fmt(v) + esc(extra), esc(unit), f"<code>{esc(path)}</code>"])
    out.append(table(["KPI", "value", "unit", "summary key"], rows, left=1))
    out.append("<h3>Equipment</h3>")
    equipment = s.get("equipment") or {}
    if not order:
        out.append('<p class="note">No equipment in this run.</p>')
    else:
        rows, classes = [], []
        # the machine ranked first is the bottleneck unless transport ranks above it
        overall = (s.get("bottlenecks") or [{}])[0]
        for rank, n in enumerate(order, 1):
            k = equipment[n]
            mark = rank == 1 and overall.get("resource", n) == n
            rows.append([str(rank), esc(n) + (" <b>(bottleneck)</b>" if mark else "")]
                        + [fmt(k.get(key), kind) for key, _, kind in EQUIPMENT_COLUMNS])
            classes.append("hi" if mark else "")
        out.append(table(["rank", "equipment"] + [esc(h) for _, h, _ in EQUIPMENT_COLUMNS],
                          rows, left=2, row_classes=classes, cls="kpis"))
        out.append('<p class="note">Ordered by the machines\' bottleneck ranking (average '
                   "active-period method). Ratios and times count after warm-up; starved: the "
                   "input was empty, blocked: an output buffer was full.</p>")
    out.append(bottleneck_section(s))
    buffers = s.get("buffers") or {}
    if buffers:
        caps = ((s.get("resolved_scenario") or {}).get("buffers") or {})
        rows = [[esc(b), fmt(v.get("level_mean")), fmt(v.get("level_end")),
                 fmt((caps.get(b) or {}).get("capacity_units")) if (caps.get(b) or {}).get(
                     "capacity_units") is not None else "unbounded"]
                for b, v in buffers.items()]
        out.append("<h3>Buffers</h3>")
        out.append(table(["buffer", "level mean", "level at end", "capacity"], rows, left=1))
    return "\n".join(out)


def _series_section(folder: Path, warmup: float, end_s: float, tp_mean: float | None) -> str:
    head = "<h2>2. Throughput and WIP over time</h2>"
    path = folder / "timeseries.parquet"
    if not path.is_file():
        return head + '<p class="note">No timeseries.parquet in this run folder.</p>'
    t = pq.read_table(path, columns=["start_s", "end_s", "wip_mean", "completed"])
    if t.num_rows == 0:
        return head + '<p class="note">timeseries.parquet is empty.</p>'
    a = {c: t.column(c).to_numpy() for c in t.column_names}
    start, end = a["start_s"].astype(float), a["end_s"].astype(float)
    width = end - start
    ok = width > 1e-9
    tp = np.full(len(start), np.nan)
    tp[ok] = a["completed"][ok] / width[ok] * 3600.0
    scale, unit = time_unit(max(end_s, float(end.max())))
    mid = (start + end) / 2.0 / scale
    fig = Figure(figsize=(10, 5.6))
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"hspace": 0.3})
    interval = float(np.median(width[ok])) if ok.any() else 0.0
    ax1.bar(start[ok] / scale, tp[ok], width=width[ok] / scale, align="edge", color="#4c72b0",
            alpha=0.35, linewidth=0, label="per bucket")
    k = int(round(3600.0 / interval)) if interval > 0 else 1
    if k >= 2 and ok.sum() > k:
        # moving average over about one hour of buckets (completions / time, not mean of rates)
        c = np.convolve(a["completed"][ok].astype(float), np.ones(k), "valid")
        w = np.convolve(width[ok], np.ones(k), "valid")
        x = (start[ok][: len(c)] + end[ok][k - 1:]) / 2.0 / scale
        ax1.plot(x, c / w * 3600.0, color="#1f3d7a", lw=1.3,
                 label=f"moving average ({duration(k * interval)})")
    if tp_mean is not None:
        ax1.axhline(tp_mean, color="#222", lw=1, ls="--",
                    label=f"mean after warm-up {tp_mean:,.4g} /h")
    ax1.set_ylabel("throughput (units/h)")
    ax2.plot(mid, a["wip_mean"], color="#dd8452", lw=1.3, label="WIP (bucket time average)")
    ax2.set_ylabel("WIP (units)")
    ax2.set_xlabel(f"simulated time ({unit})")
    for ax in (ax1, ax2):
        if warmup > 0:
            ax.axvspan(0, warmup / scale, color="#999", alpha=0.12, lw=0)
            ax.axvline(warmup / scale, color="#c44e52", lw=1.2, ls="-", label="end of warm-up")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=4, fontsize=8,
                  frameon=False, borderaxespad=0.1)
    ax1.set_xlim(0, max(end_s, float(end.max())) / scale)
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    cap = (f"Completions per bucket of {esc(duration(interval))} converted to units/h (top) "
           "and the time-average WIP per bucket (bottom); the shaded span is the warm-up.")
    return head + figure_html(fig, cap, "throughput and WIP over time")


def split_suspended(k: dict[str, Any]) -> dict[str, float]:
    """The unit's positive state times (s), with Suspended split into ``Suspended (starved)``
    and ``Suspended (blocked)`` in the ratio of its ``starved_s`` to ``blocked_s`` (which also
    count the short Suspending and Unsuspending states)."""
    out = {st: float(v) for st, v in (k.get("state_time_s") or {}).items()
           if num(v) is not None and v > 0}
    starved, blocked = num(k.get("starved_s")) or 0.0, num(k.get("blocked_s")) or 0.0
    total = out.get("Suspended", 0.0)
    if total > 0 and starved + blocked > 0:
        del out["Suspended"]
        for label, part in ((STARVED_STATE, starved), (BLOCKED_STATE, blocked)):
            if part > 0:
                out[label] = total * part / (starved + blocked)
    return out


def _state_breakdown_section(equipment: dict[str, Any], order: list[str]) -> str:
    head = "<h2>3. PackML state breakdown per unit (after warm-up)</h2>"
    rows = {n: split_suspended(equipment[n]) for n in order}
    rows = {n: r for n, r in rows.items() if r}
    if not rows:
        return head + '<p class="note">No state times recorded.</p>'
    states = state_order({st for r in rows.values() for st in r})
    names = list(rows)[::-1]  # bottleneck at the top
    fig = Figure(figsize=(10, 1.1 + 0.55 * len(names)))
    ax = fig.subplots()
    extra: dict[str, str] = {}
    left = np.zeros(len(names))
    for st in states:
        vals = np.array([rows[n].get(st, 0.0) / sum(rows[n].values()) * 100.0 for n in names])
        ax.barh(names, vals, left=left, color=state_colour(st, extra), edgecolor="white",
                linewidth=0.5, label=st)
        for y, (l0, v) in enumerate(zip(left, vals)):
            if v >= 6:
                dark = st in ("Execute", "Held", "Aborted", "Stopped", "Complete")
                ax.text(l0 + v / 2, y, f"{v:.0f}%", ha="center", va="center", fontsize=8,
                        color="white" if dark else "#222")
        left += vals
    totals = {n: sum(r.values()) for n, r in rows.items()}
    ax.set_yticks(range(len(names)),
                  [f"{n}\n{duration(totals[n])}" for n in names], fontsize=9)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of observed time (%)")
    ax.legend(ncols=min(len(states), 6), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.18 if len(names) > 2 else -0.3), frameon=False)
    table_rows = [[esc(n)] + [fmt(rows[n].get(st, 0.0), "dur") for st in states]
                  for n in order if n in rows]
    cap = ("Share of each PackML state of the unit's state machine (one per unit, whatever "
           "its number of servers) in the time after warm-up; states with zero time are "
           "omitted. Suspended is split into starved (waiting for input) and blocked (waiting "
           "for room downstream). The labels give the total observed time.")
    return (head + figure_html(fig, cap, "PackML state breakdown")
            + table(["equipment"] + [esc(st) for st in states], table_rows, left=1))


def gantt_window(warmup_s: float, end_s: float, window_s: float = GANTT_WINDOW_S
                 ) -> tuple[float, float]:
    """The Gantt window: ``window_s`` from the end of warm-up, or the whole run if shorter."""
    if end_s <= window_s:
        return 0.0, end_s
    t0 = min(max(warmup_s, 0.0), end_s - window_s)
    return t0, t0 + window_s


def read_states_window(path: Path, t0: float, t1: float) -> dict[str, np.ndarray]:
    """State intervals overlapping [t0, t1), clipped to it; only four columns are read and row
    groups outside the window are skipped by their statistics."""
    t = pq.read_table(path, columns=["entity", "state", "start_s", "end_s"],
                      filters=[("end_s", ">", t0), ("start_s", "<", t1)])
    return {"entity": t.column("entity").to_numpy(zero_copy_only=False),
            "state": t.column("state").to_numpy(zero_copy_only=False),
            "start_s": np.clip(t.column("start_s").to_numpy(), t0, t1),
            "end_s": np.clip(t.column("end_s").to_numpy(), t0, t1)}


def _merge_runs(start: np.ndarray, end: np.ndarray, states: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join back-to-back intervals of the same state (fewer rectangles to draw)."""
    if len(start) < 2:
        return start, end, states
    new = np.ones(len(start), dtype=bool)
    new[1:] = (states[1:] != states[:-1]) | (start[1:] > end[:-1] + 1e-9)
    idx = np.flatnonzero(new)
    return start[idx], np.maximum.reduceat(end, idx), states[idx]


def _gantt_section(folder: Path, order: list[str], warmup: float, end_s: float) -> str:
    head = "<h2>4. States over time (Gantt)</h2>"
    path = folder / "states.parquet"
    if not path.is_file():
        return head + '<p class="note">No states.parquet in this run folder.</p>'
    t0, t1 = gantt_window(warmup, end_s)
    d = read_states_window(path, t0, t1)
    if len(d["entity"]) == 0:
        return head + (f'<p class="note">No state intervals between {t0:,.0f} s and '
                       f"{t1:,.0f} s.</p>")
    present = set(d["entity"].tolist())
    entities = [n for n in order if n in present] + sorted(present - set(order))
    scale, unit = time_unit(t1 - t0)
    if t1 - t0 <= 3 * 3600:
        scale, unit = 60.0, "min"
    fig = Figure(figsize=(10, 1.2 + 0.5 * len(entities)))
    ax = fig.subplots()
    extra: dict[str, str] = {}
    seen: set[str] = set()
    n_rect = 0
    for y, ent in enumerate(reversed(entities)):
        m = d["entity"] == ent
        st, en, sn = d["start_s"][m], d["end_s"][m], d["state"][m]
        o = np.argsort(st, kind="stable")
        st, en, sn = _merge_runs(st[o], en[o], sn[o])
        for state in state_order(set(sn.tolist())):
            k = sn == state
            spans = list(zip(st[k] / scale, (en[k] - st[k]) / scale))
            ax.broken_barh(spans, (y - 0.38, 0.76), facecolors=state_colour(state, extra),
                           edgecolor="none")
            seen.add(state)
            n_rect += len(spans)
    ax.set_yticks(range(len(entities)), list(reversed(entities)), fontsize=9)
    ax.set_ylim(-0.6, len(entities) - 0.4)
    ax.set_xlim(t0 / scale, t1 / scale)
    ax.set_xlabel(f"simulated time ({unit})")
    if t0 < warmup < t1:
        ax.axvline(warmup / scale, color="#c44e52", lw=1.2, label="end of warm-up")
    handles = [Patch(facecolor=state_colour(s, extra), label=s) for s in state_order(seen)]
    ax.legend(handles=handles, ncols=min(len(handles), 7), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.22 if len(entities) > 2 else -0.4), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    cap = (f"PackML states from states.parquet between {t0 / 3600:,.2f} h and "
           f"{t1 / 3600:,.2f} h of simulated time ({len(d['entity']):,} intervals read, "
           f"{n_rect:,} drawn after joining repeats). The window is the first "
           f"{esc(duration(GANTT_WINDOW_S))} after warm-up, or the whole run if shorter.")
    return head + figure_html(fig, cap, "Gantt chart of states")




def _layout_section(s: dict[str, Any]) -> str:
    head = "<h2>5. Layout</h2>"
    made = layout_figure(s)
    if made is None:
        return head + '<p class="note">The resolved scenario has no nodes.</p>'
    fig, cap = made
    return head + figure_html(fig, cap, "plant layout")
