"""Self-contained HTML reports for a run folder or an experiment folder.

:func:`write_report` detects the kind of folder from its ``summary.json`` and writes one HTML
file that opens offline: inline CSS, no scripts, figures embedded as base64 PNG data URIs.

A **run report** shows the plant and per-equipment KPIs (bottleneck first), throughput and WIP
over time with the warm-up marked, the PackML state breakdown per unit, a Gantt chart of states
over a time window and the plant layout (links coloured by lane usage when the summary has a
``lanes`` entry). An **experiment report** shows the design, runs ok/failed, the mean and
confidence half-width per design point and KPI, factor-response plots with confidence intervals
and the paired comparisons against the baseline point.

Memory stays bounded whatever the horizon: ``events.parquet`` is never read, ``states.parquet``
is read with a time-window filter (row groups outside the window are skipped by their
statistics) and only the columns needed, ``timeseries.parquet`` is a few hundred rows.

Figures are drawn on :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas; pyplot
is never imported, so no global backend is switched and no figure is left open.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch

from .report_margins import margin_section

__all__ = ["write_report"]

GANTT_WINDOW_S = 8 * 3600.0
"""Default Gantt window: the first 8 hours after warm-up (or the whole run if shorter)."""

RUN_FILES = ("events.parquet", "states.parquet", "kpis.parquet", "timeseries.parquet",
             "genealogy.parquet")
EXPERIMENT_FILES = ("summary.parquet", "comparisons.parquet")

# Fixed colour per PackML state: Execute green; Suspended orange; Held red, Aborted dark red;
# Stopped grey; Idle / Complete calm blue / purple; acting (transient) states lighter shades.
STATE_COLOURS: dict[str, str] = {
    "Execute": "#2ca02c",
    "Idle": "#6baed6",
    "Starting": "#c6dbef",
    "Resetting": "#deebf7",
    "Completing": "#dadaeb",
    "Complete": "#9e9ac8",
    "Suspended": "#fd8d3c",
    "Suspending": "#fdd0a2",
    "Unsuspending": "#fee6ce",
    "Held": "#d62728",
    "Holding": "#f4a6a6",
    "Unholding": "#f9cccc",
    "Aborted": "#7f0000",
    "Aborting": "#c47070",
    "Clearing": "#e3b3b3",
    "Stopped": "#7f7f7f",
    "Stopping": "#c7c7c7",
}
PACKML_ORDER = ("Execute", "Idle", "Starting", "Resetting", "Completing", "Complete",
                "Suspended", "Suspending", "Unsuspending", "Held", "Holding", "Unholding",
                "Aborted", "Aborting", "Clearing", "Stopped", "Stopping")
_EXTRA_COLOURS = ("#17becf", "#bcbd22", "#e377c2", "#8c564b", "#9467bd", "#1f77b4",
                  "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5")
ROLE_COLOURS = {"station": "#4c72b0", "port": "#2a9df4", "waypoint": "#a0a0a0",
                "storage": "#b07c4c", "dock": "#55a868", "charger": "#f2c12e",
                "parking": "#8172b2", "holding": "#d65f5f"}

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
LANE_COUNT_KEYS = ("usage", "trips", "traversals", "count", "uses", "busy_s", "utilization")

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.5em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ccc;
padding-bottom:.2em;margin-top:1.8em}h3{font-size:1.05em}
.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.hi td{background:#fff4d6}
.meta td{text-align:left}.meta th{text-align:left;font-weight:600}
.scroll{overflow-x:auto}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.85em}
.warn{background:#fdecea;border:1px solid #f5c2c0;padding:.5em .8em;border-radius:4px}
.note{color:#666;font-style:italic}
code{font-size:.9em;background:#f6f6f6;padding:0 .2em}
footer{margin-top:2em;color:#888;font-size:.8em}
"""


# --- public API ---------------------------------------------------------------------------
def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write one self-contained HTML file for a run folder or an experiment folder; default
    out = folder / "report.html". Returns the path."""
    folder = Path(folder)
    kind, summary = _detect(folder)
    body = _run_report(folder, summary) if kind == "run" else _experiment_report(folder, summary)
    out_path = Path(out) if out is not None else folder / "report.html"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(body, encoding="utf-8")
    return out_path


def _detect(folder: Path) -> tuple[str, dict[str, Any]]:
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (expected a darkfab run or experiment folder)")
    sj = folder / "summary.json"
    if not sj.is_file():
        raise ValueError(f"{folder}: no summary.json, so neither a run folder (summary.json, "
                         f"{', '.join(RUN_FILES)}) nor an experiment folder (summary.json, "
                         f"{', '.join(EXPERIMENT_FILES)}, runs/)")
    try:
        summary = json.loads(sj.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{sj}: not readable JSON ({e})") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{sj}: expected a JSON object")
    if "run_id" in summary:
        return "run", summary
    if "experiment" in summary and "points" in summary:
        return "experiment", summary
    missing = "'run_id' (run folder) or 'experiment' and 'points' (experiment folder)"
    raise ValueError(f"{folder}: summary.json has neither {missing}; "
                     f"keys found: {', '.join(sorted(summary)) or 'none'}")


# --- formatting helpers -------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def _fmt(x: Any, kind: str = "num") -> str:
    """Format a number for a table: ``pct`` as a percentage, ``dur`` as a duration."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if not isinstance(x, (int, float)):
        return _e(x)
    if isinstance(x, float) and math.isnan(x):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if kind == "pct":
        return f"{100.0 * x:.1f} %"
    if kind == "dur":
        return _duration(float(x))
    if isinstance(x, int):
        return f"{x:,}"
    ax = abs(x)
    if ax >= 1e4:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:,.1f}"
    if ax == 0:
        return "0"
    if ax < 1e-3:
        return f"{x:.3g}"
    return f"{x:.4g}"


def _duration(s: float) -> str:
    if s is None or not math.isfinite(s):
        return _fmt(s)
    if abs(s) < 120:
        return f"{s:.1f} s"
    if abs(s) < 2 * 3600:
        return f"{s / 60:.1f} min"
    if abs(s) < 3 * 86400:
        return f"{s / 3600:.2f} h"
    return f"{s / 86400:.2f} d"


def _lookup(d: dict, path: str) -> Any:
    x: Any = d
    for part in path.split("."):
        x = x.get(part) if isinstance(x, dict) else None
    return x


def _label(v: Any) -> str:
    """A factor level as text: numbers and strings as they are, anything else as JSON."""
    if isinstance(v, str):
        return v
    if _num(v) is not None:
        return f"{v:g}" if isinstance(v, float) else str(v)
    return json.dumps(v, sort_keys=False)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1,
           row_classes: Sequence[str] | None = None, cls: str = "") -> str:
    """An HTML table; cells are already-escaped HTML; the first ``left`` columns align left."""
    head = "".join(f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        rc = row_classes[r] if row_classes and row_classes[r] else ""
        cells = "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        body.append(f'<tr class="{rc}">{cells}</tr>' if rc else f"<tr>{cells}</tr>")
    c = f' class="{cls}"' if cls else ""
    return (f'<div class="scroll"><table{c}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _meta(items: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table class="meta">{rows}</table>'


def _figure(fig: Figure, caption: str = "", alt: str = "figure") -> str:
    """Render ``fig`` to PNG (Agg) and return an HTML <figure> with a data URI."""
    buf = io.BytesIO()
    # no "Software" text chunk: keeps the file free of any URL, even inside the PNG
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    fig.clear()
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
            f"{cap}</figure>")


def _page(title: str, subtitle: str, sections: list[str]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{_e(title)}</h1>\n<p class=\"sub\">{subtitle}</p>\n"
            + "\n".join(sections)
            + f"\n<footer>Written by darkfab report on {stamp}.</footer>\n</body>\n</html>\n")


def _state_colour(state: str, extra: dict[str, str]) -> str:
    if state in STATE_COLOURS:
        return STATE_COLOURS[state]
    if state not in extra:
        extra[state] = _EXTRA_COLOURS[len(extra) % len(_EXTRA_COLOURS)]
    return extra[state]


def _state_order(states: Iterable[str]) -> list[str]:
    states = set(states)
    return [s for s in PACKML_ORDER if s in states] + sorted(states - set(PACKML_ORDER))


def _time_unit(span_s: float) -> tuple[float, str]:
    return (86400.0, "d") if span_s > 72 * 3600 else (3600.0, "h")


# --- run report ---------------------------------------------------------------------------
def _run_report(folder: Path, s: dict[str, Any]) -> str:
    rs = s.get("resolved_scenario") or {}
    scen = rs.get("scenario") or {}
    name = s.get("scenario") or scen.get("name") or "?"
    horizon = _num(s.get("horizon_s")) or 0.0
    simulated = _num(s.get("simulated_s")) or horizon
    warmup = _num(s.get("warmup_s")) or 0.0
    subtitle = (f"scenario <b>{_e(name)}</b> · seed {_e(s.get('seed'))} · replication "
                f"{_e(s.get('replication'))} · horizon {_e(_duration(horizon))} · warm-up "
                f"{_e(_duration(warmup))}")
    meta = [("run id", f"<code>{_e(s.get('run_id'))}</code>"),
            ("scenario", _e(name)),
            ("description", _e(scen.get("description") or "–")),
            ("seed / replication", f"{_e(s.get('seed'))} / {_e(s.get('replication'))}"),
            ("horizon", f"{_fmt(horizon)} s ({_e(_duration(horizon))})"),
            ("simulated", f"{_fmt(simulated)} s ({_e(_duration(simulated))})"),
            ("warm-up", f"{_fmt(warmup)} s ({_e(_duration(warmup))}); KPIs count only after it"),
            ("events logged", _fmt(s.get("events"))),
            ("wall time", _e(_duration(_num(s.get("wall_s")) or 0.0))),
            ("darkfab version", _e(s.get("darkfab_version", "?"))),
            ("folder", f"<code>{_e(folder.resolve())}</code>")]
    sections = [_meta(meta)]
    if s.get("partial"):
        why = _e(s.get("partial_reason") or "interrupted")
        sections.append(f'<p class="warn">Partial run: {why} — KPIs and tables cover only the '
                        "simulated time reached.</p>")
    equipment = s.get("equipment") or {}
    order = _equipment_order(s)
    sections.append(_kpi_section(s, order))
    sections.append(_series_section(folder, warmup, simulated or horizon,
                                    _num(s.get("throughput_per_h"))))
    sections.append(_state_breakdown_section(equipment, order))
    sections.append(_gantt_section(folder, order, warmup, simulated or horizon))
    sections.append(_layout_section(s))
    return _page(f"darkfab run report — {name}", subtitle, sections)


def _equipment_order(s: dict[str, Any]) -> list[str]:
    equipment = s.get("equipment") or {}
    ranking = [n for n in (s.get("bottleneck_ranking") or []) if n in equipment]
    return ranking + [n for n in equipment if n not in ranking]


def _kpi_section(s: dict[str, Any], order: list[str]) -> str:
    out = ["<h2>1. KPIs (after warm-up)</h2>", "<h3>Plant</h3>"]
    rows = []
    for path, label, unit in PLANT_KPIS:
        v = _lookup(s, path)
        if v is None and path.endswith(".max"):
            continue
        extra = f" ({_duration(v)})" if unit == "s" and _num(v) is not None and v >= 120 else ""
        rows.append([_e(label), _fmt(v) + _e(extra), _e(unit), f"<code>{_e(path)}</code>"])
    out.append(_table(["KPI", "value", "unit", "summary key"], rows, left=1))
    out.append("<h3>Equipment</h3>")
    equipment = s.get("equipment") or {}
    if not order:
        out.append('<p class="note">No equipment in this run.</p>')
    else:
        rows, classes = [], []
        for rank, n in enumerate(order, 1):
            k = equipment[n]
            rows.append([str(rank), _e(n) + (" <b>(bottleneck)</b>" if rank == 1 else "")]
                        + [_fmt(k.get(key), kind) for key, _, kind in EQUIPMENT_COLUMNS])
            classes.append("hi" if rank == 1 else "")
        out.append(_table(["rank", "equipment"] + [_e(h) for _, h, _ in EQUIPMENT_COLUMNS],
                          rows, left=2, row_classes=classes, cls="kpis"))
        out.append('<p class="note">Ordered by the bottleneck ranking (average active-period '
                   "method): the first row is the bottleneck. Ratios and times count after "
                   "warm-up.</p>")
    buffers = s.get("buffers") or {}
    if buffers:
        caps = ((s.get("resolved_scenario") or {}).get("buffers") or {})
        rows = [[_e(b), _fmt(v.get("level_mean")), _fmt(v.get("level_end")),
                 _fmt((caps.get(b) or {}).get("capacity_units")) if (caps.get(b) or {}).get(
                     "capacity_units") is not None else "unbounded"]
                for b, v in buffers.items()]
        out.append("<h3>Buffers</h3>")
        out.append(_table(["buffer", "level mean", "level at end", "capacity"], rows, left=1))
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
    scale, unit = _time_unit(max(end_s, float(end.max())))
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
                 label=f"moving average ({_duration(k * interval)})")
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
    cap = (f"Completions per bucket of {_e(_duration(interval))} converted to units/h (top) "
           "and the time-average WIP per bucket (bottom); the shaded span is the warm-up.")
    return head + _figure(fig, cap, "throughput and WIP over time")


def _state_breakdown_section(equipment: dict[str, Any], order: list[str]) -> str:
    head = "<h2>3. PackML state breakdown per unit (after warm-up)</h2>"
    rows = {n: {k: float(v) for k, v in ((equipment[n].get("state_time_s") or {}).items())
                if _num(v) is not None and v > 0} for n in order}
    rows = {n: r for n, r in rows.items() if r}
    if not rows:
        return head + '<p class="note">No state times recorded.</p>'
    states = _state_order({st for r in rows.values() for st in r})
    names = list(rows)[::-1]  # bottleneck at the top
    fig = Figure(figsize=(10, 1.1 + 0.55 * len(names)))
    ax = fig.subplots()
    extra: dict[str, str] = {}
    left = np.zeros(len(names))
    for st in states:
        vals = np.array([rows[n].get(st, 0.0) / sum(rows[n].values()) * 100.0 for n in names])
        ax.barh(names, vals, left=left, color=_state_colour(st, extra), edgecolor="white",
                linewidth=0.5, label=st)
        for y, (l0, v) in enumerate(zip(left, vals)):
            if v >= 6:
                dark = st in ("Execute", "Held", "Aborted", "Stopped", "Complete")
                ax.text(l0 + v / 2, y, f"{v:.0f}%", ha="center", va="center", fontsize=8,
                        color="white" if dark else "#222")
        left += vals
    totals = {n: sum(r.values()) for n, r in rows.items()}
    ax.set_yticks(range(len(names)),
                  [f"{n}\n{_duration(totals[n])}" for n in names], fontsize=9)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of observed time (%)")
    ax.legend(ncols=min(len(states), 6), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.18 if len(names) > 2 else -0.3), frameon=False)
    table_rows = [[_e(n)] + [_fmt(rows[n].get(st, 0.0), "dur") for st in states]
                  for n in order if n in rows]
    cap = ("Share of each PackML state of the unit's state machine (one per unit, whatever "
           "its number of servers) in the time after warm-up; states with zero time are "
           "omitted. The labels give the total observed time.")
    return (head + _figure(fig, cap, "PackML state breakdown")
            + _table(["equipment"] + [_e(st) for st in states], table_rows, left=1))


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
    scale, unit = _time_unit(t1 - t0)
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
        for state in _state_order(set(sn.tolist())):
            k = sn == state
            spans = list(zip(st[k] / scale, (en[k] - st[k]) / scale))
            ax.broken_barh(spans, (y - 0.38, 0.76), facecolors=_state_colour(state, extra),
                           edgecolor="none")
            seen.add(state)
            n_rect += len(spans)
    ax.set_yticks(range(len(entities)), list(reversed(entities)), fontsize=9)
    ax.set_ylim(-0.6, len(entities) - 0.4)
    ax.set_xlim(t0 / scale, t1 / scale)
    ax.set_xlabel(f"simulated time ({unit})")
    if t0 < warmup < t1:
        ax.axvline(warmup / scale, color="#c44e52", lw=1.2, label="end of warm-up")
    handles = [Patch(facecolor=_state_colour(s, extra), label=s) for s in _state_order(seen)]
    ax.legend(handles=handles, ncols=min(len(handles), 7), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.22 if len(entities) > 2 else -0.4), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    cap = (f"PackML states from states.parquet between {t0 / 3600:,.2f} h and "
           f"{t1 / 3600:,.2f} h of simulated time ({len(d['entity']):,} intervals read, "
           f"{n_rect:,} drawn after joining repeats). The window is the first "
           f"{_e(_duration(GANTT_WINDOW_S))} after warm-up, or the whole run if shorter.")
    return head + _figure(fig, cap, "Gantt chart of states")


def _node_of(cfg: Any) -> str | None:
    return cfg.get("node") if isinstance(cfg, dict) else None


def lane_usage(summary: dict[str, Any]) -> dict[tuple[str, str], float] | None:
    """Usage per link from ``summary["lanes"]`` if present, keyed by (a, b).

    Accepted shapes: a list of ``{"a", "b", <count>}`` records, or a mapping ``"a->b"`` /
    ``"a--b"`` / ``"a|b"`` → number or record, where ``<count>`` is the first numeric field of
    ``usage, trips, traversals, count, uses, busy_s, utilization``.
    """
    lanes = summary.get("lanes")
    if not lanes:
        return None

    def count(v: Any) -> float | None:
        if _num(v) is not None:
            return float(v)
        if isinstance(v, dict):
            for k in LANE_COUNT_KEYS:
                if _num(v.get(k)) is not None:
                    return float(v[k])
        return None

    out: dict[tuple[str, str], float] = {}
    if isinstance(lanes, list):
        for rec in lanes:
            if isinstance(rec, dict) and "a" in rec and "b" in rec and count(rec) is not None:
                key = (str(rec["a"]), str(rec["b"]))
                out[key] = out.get(key, 0.0) + count(rec)  # type: ignore[operator]
    elif isinstance(lanes, dict):
        for k, v in lanes.items():
            for sep in ("->", "--", "|"):
                if sep in k:
                    a, b = k.split(sep, 1)
                    c = count(v)
                    if c is not None:
                        key = (a.strip(), b.strip())
                        out[key] = out.get(key, 0.0) + c
                    break
    return out or None


def _layout_section(s: dict[str, Any]) -> str:
    head = "<h2>5. Layout</h2>"
    made = layout_figure(s)
    if made is None:
        return head + '<p class="note">The resolved scenario has no nodes.</p>'
    fig, cap = made
    return head + _figure(fig, cap, "plant layout")


def write_layout_png(folder: str | Path, out: str | Path | None = None) -> Path:
    """``darkfab plot layout``: the plant layout of a run (nodes by role, lanes, stations,
    lane usage as a heat map when the run had robots) as a PNG; default FOLDER/layout.png."""
    folder = Path(folder)
    kind, s = _detect(folder)
    if kind != "run":
        raise ValueError(f"{folder}: a run folder is needed (this is an experiment folder)")
    made = layout_figure(s)
    if made is None:
        raise ValueError(f"{folder}: the resolved scenario has no nodes")
    path = Path(out) if out else folder / "layout.png"
    made[0].savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
    return path


def layout_figure(s: dict[str, Any]) -> tuple[Figure, str] | None:
    """The layout figure and its caption from a run's ``summary.json`` (``None`` if the
    scenario has no nodes)."""
    rs = s.get("resolved_scenario") or {}
    nodes: dict[str, dict] = rs.get("nodes") or {}
    links: list[dict] = rs.get("links") or []
    if not nodes:
        return None
    pos = {n: (float(v.get("x_m") or 0.0), float(v.get("y_m") or 0.0)) for n, v in nodes.items()}
    at: dict[str, list[tuple[str, str]]] = {n: [] for n in nodes}
    for kind, tag in (("equipment", "eq"), ("buffers", "buf"), ("sources", "src"),
                      ("sinks", "sink")):
        for name, cfg in (rs.get(kind) or {}).items():
            node = _node_of(cfg)
            if node in at:
                extra = ""
                if kind == "buffers" and isinstance(cfg, dict):
                    cap = cfg.get("capacity_units")
                    extra = f" (cap {cap})" if cap is not None else " (unbounded)"
                elif kind == "equipment" and isinstance(cfg, dict) \
                        and (cfg.get("servers") or 1) > 1:
                    extra = f" ×{cfg['servers']}"
                at[node].append((tag, f"{tag}: {name}{extra}"))
    usage = lane_usage(s)
    xs, ys = zip(*pos.values())
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    # data box with room for the labels (names above, residents below each node)
    x_lo, x_hi = min(xs) - 0.08 * span - 2.0, max(xs) + 0.08 * span + 2.0
    y_lo, y_hi = min(ys) - 0.1 * span - 2.0, max(ys) + 0.08 * span + 2.0
    w = 10.0
    h = min(max(2.6, 0.85 * w * (y_hi - y_lo) / (x_hi - x_lo)), 9.0) + 0.8
    if usage:
        h += 0.8  # colour bar
    fig = Figure(figsize=(w, h))
    ax = fig.subplots()
    cmap = norm = None
    if usage:
        from matplotlib import colormaps
        from matplotlib.colors import ListedColormap, Normalize
        # light orange (little used) to dark red (busiest); unused links stay grey and dashed
        cmap = ListedColormap(colormaps["YlOrRd"](np.linspace(0.3, 1.0, 256)), name="lanes")
        norm = Normalize(vmin=0.0, vmax=max(max(usage.values()), 1e-9))
    for ln in links:
        a, b = ln.get("a"), ln.get("b")
        if a not in pos or b not in pos:
            continue
        directed = bool(ln.get("directed"))
        (xa, ya), (xb, yb) = pos[a], pos[b]
        length = _num(ln.get("length_m"))
        if length is None:
            length = math.hypot(xb - xa, yb - ya)
        colour, lw, ls = "#888", 1.6, "-"
        if usage is not None and cmap is not None and norm is not None:
            u = usage.get((a, b), 0.0) + (0.0 if directed else usage.get((b, a), 0.0))
            if u > 0:
                colour, lw = cmap(norm(u)), 1.5 + 4.0 * norm(u)
            else:
                colour, lw, ls = "#aaa", 1.0, "--"
        ax.add_patch(FancyArrowPatch((xa, ya), (xb, yb),
                                     arrowstyle="-|>" if directed else "-",
                                     mutation_scale=14, color=colour, lw=lw, linestyle=ls,
                                     shrinkA=9, shrinkB=9, zorder=1))
        ax.text((xa + xb) / 2, (ya + yb) / 2, f"{length:.1f} m", fontsize=7, color="#555",
                ha="center", va="center", zorder=2,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    roles = []
    for n, (x, y) in pos.items():
        role = nodes[n].get("role") or "station"
        roles.append(role)
        ax.scatter([x], [y], s=160, color=ROLE_COLOURS.get(role, "#8172b2"), edgecolor="#222",
                   linewidth=0.8, zorder=3)
        ax.annotate(n, (x, y), xytext=(0, 9), textcoords="offset points", ha="center",
                    va="bottom", fontsize=9, fontweight="bold", zorder=4)
        if at[n]:
            ax.annotate("\n".join(t for _, t in at[n]), (x, y), xytext=(0, -10),
                        textcoords="offset points", ha="center", va="top", fontsize=7.5,
                        color="#333", zorder=4,
                        bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#ccc",
                              "alpha": 0.85})
    handles = [Line2D([], [], marker="o", ls="", markersize=9, markeredgecolor="#222",
                      color=ROLE_COLOURS.get(r, "#8172b2"), label=r) for r in sorted(set(roles))]
    ax.legend(handles=handles, title="node role", fontsize=8, title_fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if usage is not None and cmap is not None and norm is not None:
        from matplotlib.cm import ScalarMappable
        sm = ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, label="lane usage (unused links dashed grey)",
                     orientation="horizontal", fraction=0.06, shrink=0.5, pad=0.18)
    # invisible corners keep room for the labels; equal aspect then adjusts the data limits
    ax.plot([x_lo, x_hi], [y_lo, y_hi], alpha=0.0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.grid(alpha=0.2)
    if usage is not None:
        cap = ("Plant graph; links coloured and thickened by lane usage from the summary's "
               "<code>lanes</code> entry. Arrows are directed links.")
    else:
        cap = ("Plant graph: nodes coloured by role, with the equipment (eq), buffers (buf), "
               "sources (src) and sinks at each node; link lengths in metres, arrows are "
               "directed links.")
    return fig, cap


# --- experiment report --------------------------------------------------------------------
def _experiment_report(folder: Path, s: dict[str, Any]) -> str:
    name = s.get("experiment", "?")
    spec = s.get("spec") or {}
    meta_spec = spec.get("experiment") or {}
    scenario = s.get("scenario") or meta_spec.get("scenario") or "?"
    scen_name = Path(str(scenario)).stem
    points: list[dict] = s.get("points") or []
    factors: list[str] = list(s.get("factors") or [])
    levels = _factor_levels(spec, points, factors)
    conf = _num(s.get("confidence")) or 0.95
    subtitle = (f"experiment <b>{_e(name)}</b> · scenario <b>{_e(scen_name)}</b> · seed "
                f"{_e(s.get('seed'))} · {len(points)} design point(s) · "
                f"{_e(s.get('runs_ok'))} runs ok, {_e(s.get('runs_failed', 0))} failed")
    warm = s.get("warmup") or {}
    warm_txt = _e(warm.get("method", "scenario"))
    if warm.get("method") == "mser5":
        warm_txt += (f": warm-up {_fmt(warm.get('warmup_s'))} s from "
                     f"{_e(warm.get('pilot_replications'))} pilot runs (cuts "
                     f"{', '.join(_fmt(c) for c in warm.get('pilot_warmups_s') or [])} s; "
                     f"{'reliable' if warm.get('reliable') else 'NOT reliable'})")
    else:
        warm_txt += " (each run uses the scenario's warm-up"
        ws = [o for o in meta_spec.get("set") or [] if str(o).startswith("scenario.warmup_s")]
        warm_txt += f", set by <code>{_e(ws[-1])}</code>)" if ws else ")"
    reps = sorted({p.get("runs_ok", 0) for p in points})
    meta = [("experiment", _e(name)),
            ("scenario", f"{_e(scen_name)} <code>{_e(scenario)}</code>"),
            ("seed", _e(s.get("seed"))),
            ("replications per point", _e(meta_spec.get("replications", "?"))
             + (f" (ok per point: {', '.join(map(str, reps))})" if reps else "")),
            ("confidence", f"{100 * conf:g} %"),
            ("overrides", ", ".join(f"<code>{_e(o)}</code>" for o in meta_spec.get("set") or [])
             or "–"),
            ("engine", _e(s.get("engine", "?"))),
            ("runs", f"{_e(s.get('runs_ok'))} ok, {_e(s.get('runs_failed', 0))} failed"),
            ("warm-up", warm_txt),
            ("wall time", _e(_duration(_num(s.get("wall_s")) or 0.0))),
            ("darkfab version", _e(s.get("darkfab_version", "?"))),
            ("folder", f"<code>{_e(folder.resolve())}</code>")]
    sections = [_meta(meta)]
    if s.get("partial"):
        sections.append('<p class="warn">Partial experiment: interrupted before all runs '
                        "finished.</p>")
    if spec.get("sequential"):
        sq = spec["sequential"]
        sections.append(f"<p>Sequential replications on <code>{_e(sq.get('kpi'))}</code> up to "
                        f"{_e(sq.get('max_replications'))} per point.</p>")
    # factors
    sec = ["<h2>Factors</h2>"]
    if factors:
        sec.append(_table(["factor", "levels"],
                          [[f"<code>{_e(f)}</code>", ", ".join(_e(_label(v)) for v in levels[f])]
                           for f in factors], left=2))
    else:
        sec.append('<p class="note">No factors: a single design point.</p>')
    sections.append("\n".join(sec))
    sections.append(_failed_section(s))
    sections.append(_point_table_section(folder, s, points, factors, conf))
    sections.append(_response_section(s, points, factors, levels, conf))
    sections.append(margin_section(s, conf))  # margin sizing (docs/twin.md), or ""
    sections.append(_comparisons_section(folder, s, points, factors))
    return _page(f"darkfab experiment report — {name}", subtitle, sections)


def _factor_levels(spec: dict, points: list[dict], factors: list[str]) -> dict[str, list]:
    out: dict[str, list] = {f: [] for f in factors}
    for f in spec.get("factors") or []:
        if isinstance(f, dict) and f.get("path") in out:
            out[f["path"]] = list(f.get("levels") or [])
    for p in points:
        for f in factors:
            v = (p.get("factors") or {}).get(f)
            if all(_label(v) != _label(w) for w in out[f]):
                out[f].append(v)
    return out


def _failed_section(s: dict[str, Any]) -> str:
    failed = s.get("failed_runs") or []
    head = "<h2>Runs</h2>"
    txt = f"<p>{_e(s.get('runs_ok'))} runs ok, {_e(s.get('runs_failed', len(failed)))} failed.</p>"
    if not failed:
        return head + txt
    rows = [[_e(r.get("point")), _e(r.get("replication")),
             f"<code>{_e(r.get('error'))}</code>", f"<code>{_e(r.get('out_dir'))}</code>"]
            for r in failed]
    return head + txt + _table(["point", "replication", "error", "run folder"], rows, left=4)


def _point_factor_cells(p: dict, factors: list[str]) -> list[str]:
    return [_e(_label((p.get("factors") or {}).get(f))) for f in factors]


def _point_table_section(folder: Path, s: dict, points: list[dict], factors: list[str],
                         conf: float) -> str:
    head = (f"<h2>Summary per design point</h2><p>Mean ± half-width of the {100 * conf:g} % "
            "t-interval over replications (n = replications with a value).</p>")
    stats = _summary_stats(folder, s, points)
    kpis = list(s.get("kpis") or []) or sorted({k for (_, k) in stats})
    if not points or not kpis:
        return head + '<p class="note">No results.</p>'
    rows = []
    for p in points:
        i = p.get("point")
        cells = [_e(i)] + _point_factor_cells(p, factors) + [_e(p.get("runs_ok", ""))]
        for k in kpis:
            st = stats.get((i, k)) or {}
            m, hw = st.get("mean"), st.get("half_width")
            cells.append(f"{_fmt(m)} ± {_fmt(hw)}" if m is not None else "–")
        rows.append(cells)
    headers = (["point"] + [f"<code>{_e(f)}</code>" for f in factors] + ["runs ok"]
               + [f"<code>{_e(k)}</code>" for k in kpis])
    return head + _table(headers, rows, left=1 + len(factors))


def _summary_stats(folder: Path, s: dict, points: list[dict]) -> dict[tuple[int, str], dict]:
    """(point, kpi) → mean, half_width, low, high, n; from summary.parquet if present."""
    path = folder / "summary.parquet"
    out: dict[tuple[int, str], dict] = {}
    if path.is_file():
        for r in pq.read_table(path).to_pylist():
            out[(r["point"], r["kpi"])] = r
        return out
    for p in points:
        for k, v in (p.get("kpis") or {}).items():
            out[(p.get("point"), k)] = v
    return out


def _finite(x: Any) -> float:
    v = _num(x)
    return v if v is not None and math.isfinite(v) else float("nan")


def _response_section(s: dict, points: list[dict], factors: list[str],
                      levels: dict[str, list], conf: float) -> str:
    head = "<h2>Factor-response plots</h2>"
    kpis = list(s.get("kpis") or [])
    if not factors or not points or not kpis:
        return head + '<p class="note">No factors to plot.</p>'
    figs = []
    for f in factors:
        others = [g for g in factors if g != f]
        numeric = all(_num(v) is not None for v in levels[f])
        xs_levels = sorted(levels[f], key=float) if numeric else levels[f]
        labels = [_label(v) for v in xs_levels]
        pos = {lab: (float(v) if numeric else float(j)) for j, (v, lab) in
               enumerate(zip(xs_levels, labels))}
        # group points by the levels of the other factors (one line per combination)
        groups: dict[str, list[dict]] = {}
        for p in points:
            key = ", ".join(_label((p.get("factors") or {}).get(g)) for g in others)
            groups.setdefault(key, []).append(p)
        ncols = min(3, len(kpis))
        nrows = math.ceil(len(kpis) / ncols)
        fig = Figure(figsize=(4.0 * ncols, 3.2 * nrows))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        span = (max(pos.values()) - min(pos.values())) if numeric and len(pos) > 1 else 1.0
        dodge = 0.012 * span if numeric else 0.08
        handles = []
        for ax, k in zip(axes, kpis):
            for gi, (gkey, pts) in enumerate(groups.items()):
                off = (gi - (len(groups) - 1) / 2) * dodge
                rows = []
                for p in pts:
                    lab = _label((p.get("factors") or {}).get(f))
                    st = (p.get("kpis") or {}).get(k) or {}
                    rows.append((pos.get(lab, float("nan")) + off, _finite(st.get("mean")),
                                 _finite(st.get("half_width"))))
                rows.sort()
                x, y, e = (np.array(c) for c in zip(*rows))
                e = np.where(np.isfinite(e), e, 0.0)
                h = ax.errorbar(x, y, yerr=e, marker="o", ms=4, capsize=3, lw=1.3,
                                label=gkey or "mean")
                if ax is axes[0]:
                    handles.append(h)
            ax.set_title(k, fontsize=9)
            ax.grid(alpha=0.3)
            if numeric:
                ax.set_xticks([pos[lab] for lab in labels])
                ax.set_xticklabels(labels, fontsize=8)
            else:
                ax.set_xticks([pos[lab] for lab in labels])
                ax.set_xticklabels([textwrap.fill(lab, 22) for lab in labels], fontsize=7)
                ax.set_xlim(-0.5, len(labels) - 0.5)
            ax.tick_params(axis="y", labelsize=8)
            ax.set_xlabel(_short(f), fontsize=8)
        spare = list(axes[len(kpis):])
        for ax in spare:
            ax.set_visible(False)
        bottom = 0.0
        if others and handles:
            title = ", ".join(_short(g) for g in others)
            if spare:  # the legend goes into the first unused panel
                spare[0].set_visible(True)
                spare[0].axis("off")
                spare[0].legend(handles=handles, loc="center", fontsize=8, title=title,
                                title_fontsize=8, frameon=False,
                                labels=[textwrap.fill(str(h.get_label()), 40) for h in handles])
            else:
                fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 3),
                           fontsize=8, frameon=False, title=title, title_fontsize=8)
                bottom = 0.06 + 0.02 * math.ceil(len(handles) / 3)
        fig.suptitle(f"KPI mean vs {f}", fontsize=10)
        fig.tight_layout(rect=(0, bottom, 1, 0.97))
        lines = ", ".join(f"<code>{_e(g)}</code>" for g in others)
        cap = (f"Mean per level of <code>{_e(f)}</code> with {100 * conf:g} % confidence "
               "intervals (error bars)" + (f"; one line per level of {lines}." if others else "."))
        figs.append(_figure(fig, cap, f"response to {f}"))
    return head + "\n".join(figs)


def _short(path: str) -> str:
    parts = path.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else path


def _comparisons_section(folder: Path, s: dict, points: list[dict], factors: list[str]) -> str:
    head = ("<h2>Paired comparisons vs the baseline</h2><p>Per replication, the KPI at a point "
            "minus the KPI at the baseline (same random numbers); mean difference and its "
            "t-interval. Highlighted rows are significant (interval excludes 0).</p>")
    path = folder / "comparisons.parquet"
    if path.is_file():
        rows = pq.read_table(path).to_pylist()
    else:
        rows = list(s.get("comparisons") or [])
    if not rows:
        return head + '<p class="note">No comparisons (a single design point).</p>'
    by_point = {p.get("point"): p for p in points}

    def desc(i: Any) -> str:
        p = by_point.get(i)
        if not p or not factors:
            return ""
        return ", ".join(f"{_short(f)}={_label((p.get('factors') or {}).get(f))}"
                         for f in factors)

    out, classes = [], []
    for r in rows:
        out.append([_e(r.get("point")), _e(desc(r.get("point"))), _e(r.get("baseline")),
                    f"<code>{_e(r.get('kpi'))}</code>", _fmt(r.get("pairs")),
                    _fmt(r.get("mean_difference")), _fmt(r.get("half_width")),
                    f"[{_fmt(r.get('low'))}, {_fmt(r.get('high'))}]",
                    "<b>yes</b>" if r.get("significant") else "no"])
        classes.append("hi" if r.get("significant") else "")
    base = by_point.get(rows[0].get("baseline"))
    btxt = (f"<p>Baseline: point {_e(rows[0].get('baseline'))}"
            + (f" ({_e(desc(rows[0].get('baseline')))})" if base and factors else "") + ".</p>")
    return head + btxt + _table(["point", "factors", "baseline", "KPI", "pairs",
                                 "mean difference", "half-width", "interval", "significant"],
                                out, left=4, row_classes=classes)
