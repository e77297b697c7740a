"""``darkfab view``: one self-contained HTML page that replays a run.

The page is built from the run's output tables only: ``summary.json`` (the resolved scenario
gives the layout: node coordinates, links, roles, what stands where), ``events.parquet`` (PackML
``state`` rows, robot ``robot`` state rows and ``move`` rows, one per lane driven; material rows
for buffer levels; a continuous line's ``line``, ``hopper_low``, ``refill``, ``refill_done``,
``divert`` and ``pat_alarm`` rows) and ``timeseries.parquet`` (throughput and WIP).

:class:`ViewBuilder` turns event rows into *chunks* (JSON-ready dicts of columnar arrays, times
in integer deciseconds) and is incremental: ``darkfab view`` feeds it the whole log once, the
live view (:mod:`darkfab.scenarios.live`) feeds it the rows recorded since its last snapshot.
The page merges chunks by concatenating their arrays. The replay page embeds its single chunk
gzip-compressed and base64-encoded (the browser inflates it with ``DecompressionStream``); no
network access, no external library. The page is the Jinja2 template ``view_assets/view.html``
with ``view.css``, ``view.js`` and the data inlined (:mod:`darkfab.scenarios.templating`).

Decimation: buffer levels keep the last level per bucket of ``horizon / 20000`` (a 30-day run:
130 s buckets); every state change and every lane driven is kept.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ViewBuilder", "layout_meta", "render_page", "rows_of", "write_view", "view_chunk"]

DS = 10.0
"""Times are sent as integer deciseconds (0.1 s resolution)."""

BUFFER_BUCKETS = 20_000
"""Buffer levels: at most one point per bucket of horizon / BUFFER_BUCKETS."""

KINDS = ("state", "robot", "line", "move", "unload", "deliver", "create", "load", "refill",
         "hopper_low", "refill_done", "divert", "pat_alarm")
"""Event kinds the view reads."""

_INTERVAL = re.compile(r"\[([-0-9.e+]+), ([-0-9.e+]+)\]")


def _ds(t) -> Any:
    return np.round(np.asarray(t, dtype=float) * DS).astype(np.int64)


def layout_meta(summary: dict[str, Any]) -> dict[str, Any]:
    """What the page draws and how to read the chunks: nodes, links, units and their nodes,
    buffers with capacities, robots with homes and battery, lines with feeders and spec."""
    s = summary["resolved_scenario"]
    nodes = s.get("nodes", {})
    names = list(nodes)
    index = {n: i for i, n in enumerate(names)}
    equipment = {n: e["node"] for n, e in s.get("equipment", {}).items()}
    buffers = {n: {"node": b["node"], "cap": b.get("capacity_units")}
               for n, b in s.get("buffers", {}).items()}
    lines = {}
    for n, ln in (s.get("continuous_lines") or {}).items():
        q = ln.get("quality", {})
        lines[n] = {"node": ln["node"],
                    "spec": [q.get("spec_low_pct", 95.0), q.get("spec_high_pct", 105.0)],
                    "margin_s": q.get("margin_s", 0.0),
                    "feeders": {f: {"low": fd["low_level_kg"], "high": fd["high_level_kg"]}
                                for f, fd in ln.get("feeders", {}).items()}}
    labelled = set(equipment.values()) | {b["node"] for b in buffers.values()} | {
        ln["node"] for ln in lines.values()}
    for sect in ("sources", "sinks"):
        labelled |= {x["node"] for x in (s.get(sect) or {}).values() if "node" in x}
    fleet = s.get("fleet")
    robots = {}
    battery = None
    if fleet:
        homes = fleet.get("homes", [])
        robots = {f"amr-{i + 1}": homes[i] if i < len(homes) else None
                  for i in range(fleet["count"])}
        b = fleet.get("battery", {})
        battery = {"capacity_kwh": b.get("capacity_kwh"), "base_kw": b.get("base_kw"),
                   "charging_kw": b.get("charging_kw"),
                   "target": fleet.get("charge_target_soc", 1.0)}
    links = [[index[ln["a"]], index[ln["b"]], int(bool(ln.get("conveyor"))),
              int(ln.get("capacity_robots") or 1)]
             for ln in s.get("links", []) if ln["a"] in index and ln["b"] in index]
    sc = s["scenario"]
    return {
        "scenario": summary.get("scenario", sc.get("name")), "run_id": summary.get("run_id"),
        "horizon_s": sc.get("horizon_s"), "warmup_s": sc.get("warmup_s", 0.0),
        "nodes": {"name": names, "x": [nodes[n]["x_m"] for n in names],
                  "y": [nodes[n]["y_m"] for n in names],
                  "role": [nodes[n].get("role", "station") for n in names],
                  "label": [int(n in labelled) for n in names]},
        "links": links, "equipment": equipment, "buffers": buffers, "lines": lines,
        "robots": robots, "battery": battery,
        "sinks": {n: x.get("kind", "product") for n, x in (s.get("sinks") or {}).items()},
    }


class ViewBuilder:
    """Event rows → chunks (see the module docstring). Keeps running totals (buffer levels,
    state names) between :meth:`feed` calls, so consecutive chunks concatenate into the same
    arrays one call over all rows would give."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.meta = layout_meta(summary)
        s = summary["resolved_scenario"]
        self.inputs: dict[str, str] = {n: e["input"] for n, e in s.get("equipment", {}).items()
                                       if e.get("input")}
        self.refill_from: dict[str, str] = {}
        for ln in (s.get("continuous_lines") or {}).values():
            for f, fd in ln.get("feeders", {}).items():
                if fd.get("refill_from"):
                    self.refill_from[f] = fd["refill_from"]
        self.levels = {b: 0 for b in self.meta["buffers"]}
        self.bucket_ds = max(1, int(DS * (self.meta["horizon_s"] or 1.0) / BUFFER_BUCKETS))
        self.state_names: list[str] = []
        self._state_code: dict[str, int] = {}
        self.feeder_line = {f: n for n, ln in self.meta["lines"].items() for f in ln["feeders"]}
        self.node_index = {n: i for i, n in enumerate(self.meta["nodes"]["name"])}
        self.t_ds = 0

    def _code(self, name: str) -> int:
        c = self._state_code.get(name)
        if c is None:
            c = self._state_code[name] = len(self.state_names)
            self.state_names.append(name)
        return c

    def feed(self, rows: dict[str, Sequence], until_s: float) -> dict[str, Any]:
        """One chunk from event ``rows`` (lists ``time_s``, ``kind``, ``entity``,
        ``location``, ``detail``, in time order), covering the run up to ``until_s``."""
        by_kind: dict[str, list[int]] = {k: [] for k in KINDS}
        for i, k in enumerate(rows["kind"]):  # one pass; the rest looks at its rows only
            g = by_kind.get(k)
            if g is not None:
                g.append(i)
        self.t_ds = int(round(until_s * DS))
        chunk: dict[str, Any] = {"t": self.t_ds, "st": self._states(rows, by_kind),
                                 "mv": self._moves(rows, by_kind),
                                 "bf": self._buffers(rows, by_kind),
                                 "ln": self._lines(rows, by_kind)}
        chunk["sn"] = list(self.state_names)
        return chunk

    def _states(self, rows, by_kind) -> dict[str, list]:
        """State steps of equipment (PackML ``state`` rows), robots (``robot`` rows) and
        continuous lines (``line`` rows, state before the colon)."""
        out: dict[str, list] = {}
        t, ent, det = rows["time_s"], rows["entity"], rows["detail"]
        code = self._code
        for i in by_kind["state"] + by_kind["robot"]:  # one list per entity: order kept
            s = out.get(ent[i])
            if s is None:
                s = out[ent[i]] = [[], []]
            s[0].append(int(round(t[i] * DS)))
            s[1].append(code(det[i]))
        for i in by_kind["line"]:
            s = out.setdefault(ent[i], [[], []])
            s[0].append(int(round(t[i] * DS)))
            s[1].append(code(det[i].split(":", 1)[0]))
        return out

    def _moves(self, rows, by_kind) -> dict[str, list]:
        """Lanes driven: [enter, arrive] in ds, from and to node indices, state of charge on
        arrival in 1/1000."""
        index = self.node_index
        out: dict[str, list] = {}
        t, ent, loc, det = rows["time_s"], rows["entity"], rows["location"], rows["detail"]
        for i in by_kind["move"]:
            frm, entered, soc = det[i].split(" ")
            m = out.get(ent[i])
            if m is None:
                m = out[ent[i]] = [[], [], [], [], []]
            m[0].append(int(round(float(entered) * DS)))
            m[1].append(int(round(t[i] * DS)))
            m[2].append(index[frm])
            m[3].append(index[loc[i]])
            m[4].append(int(round(float(soc) * 1000)))
        return out

    def _buffers(self, rows, by_kind) -> dict[str, list]:
        """Buffer levels: + unload / deliver / create into the buffer, − load by the unit it
        feeds, − refill of the feeder it serves; the last level per bucket."""
        bufs = self.levels
        t, loc, ent = rows["time_s"], rows["location"], rows["entity"]
        delta: dict[str, list] = {}
        for k in ("unload", "deliver", "create", "load", "refill"):
            source = self.inputs if k == "load" else self.refill_from if k == "refill" else None
            for i in by_kind[k]:
                b = loc[i] if source is None else source.get(ent[i])
                if b in bufs:
                    d = delta.get(b)
                    if d is None:
                        d = delta[b] = [[], [], []]
                    d[0].append(t[i])
                    d[1].append(1 if source is None else -1)
                    d[2].append(i)
        out: dict[str, list] = {}
        for b, (ts, ds, order) in delta.items():
            o = np.argsort(order, kind="stable")  # back to log order
            lev = bufs[b] + np.cumsum(np.asarray(ds)[o])
            bufs[b] = int(lev[-1])
            tds = _ds(np.asarray(ts)[o])
            bucket = tds // self.bucket_ds
            last = np.flatnonzero(np.append(bucket[1:] != bucket[:-1], True))
            out[b] = [tds[last].tolist(), np.maximum(lev[last], 0).tolist()]
        return out

    def _lines(self, rows, by_kind) -> dict[str, Any]:
        """Per continuous line: hopper levels (kg at hopper_low and refill_done), gate
        diversion windows [from, to, cause] and out-of-spec PAT readings [time, % of label
        claim]."""
        out: dict[str, Any] = {}
        t, ent, det = rows["time_s"], rows["entity"], rows["detail"]
        for i in sorted(by_kind["hopper_low"] + by_kind["refill_done"]):
            line = self.feeder_line.get(ent[i])
            if line is None:
                continue
            h = out.setdefault(line, {}).setdefault("hop", {}).setdefault(ent[i], [[], []])
            h[0].append(int(round(t[i] * DS)))
            h[1].append(round(float(det[i].split()[0]), 3))
        for i in by_kind["divert"]:
            m = _INTERVAL.search(det[i])
            if m:
                lo, hi = float(m.group(1)), float(m.group(2))
                out.setdefault(ent[i], {}).setdefault("dv", []).append(
                    [int(round(lo * DS)), int(round(hi * DS)), det[i].split(" ")[0]])
        for i in by_kind["pat_alarm"]:  # "0.9436 at 495.0"
            val, _, at = det[i].split(" ")
            out.setdefault(ent[i], {}).setdefault("pat", []).append(
                [int(round(float(at) * DS)), round(100 * float(val), 2)])
        return out


ROW_COLUMNS = ("time_s", "kind", "entity", "location", "detail")


def rows_of(table: pa.Table) -> dict[str, list]:
    """The columns :meth:`ViewBuilder.feed` reads, as Python lists."""
    return {c: table[c].to_pylist() for c in ROW_COLUMNS}


def _timeseries(run_dir: Path) -> list[list] | None:
    """Throughput (units/h) and time-average WIP per bucket of timeseries.parquet, at the
    bucket's end."""
    p = run_dir / "timeseries.parquet"
    if not p.exists():
        return None
    ts = pq.read_table(p, columns=["start_s", "end_s", "wip_mean", "completed"])
    a, b = ts["start_s"].to_numpy(), ts["end_s"].to_numpy()
    c, w = ts["completed"].to_numpy(), ts["wip_mean"].to_numpy()
    width = np.where(b > a, b - a, np.nan)
    thr = np.nan_to_num(3600.0 * c / width)
    return [_ds(b).tolist(), np.round(thr, 3).tolist(), np.round(w, 3).tolist()]


def view_chunk(run_dir: Path | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(meta, chunk) of a finished run folder."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    if "resolved_scenario" not in summary or "nodes" not in summary["resolved_scenario"]:
        raise ValueError(f"{run_dir}: not a plant run (no layout in summary.json)")
    vb = ViewBuilder(summary)
    events = pq.read_table(run_dir / "events.parquet",
                           columns=["time_s", "kind", "entity", "location", "detail"],
                           filters=[("kind", "in", list(KINDS))])
    chunk = vb.feed(rows_of(events), float(summary.get("simulated_s") or summary["horizon_s"]))
    chunk["ts"] = _timeseries(run_dir)
    meta = vb.meta
    line_kpis = summary.get("continuous_lines") or {}
    for n, ln in meta["lines"].items():
        k = line_kpis.get(n, {})
        ln["api_mean_pct"] = k.get("api_content_mean_pct")
        ln["api_rsd_pct"] = k.get("api_content_rsd_pct")
    meta["kpis"] = {"throughput_per_h": summary.get("throughput_per_h"),
                    "wip_mean": summary.get("wip_mean"), "partial": summary.get("partial")}
    return meta, chunk


def render_page(meta: dict[str, Any], payload: str, live: bool) -> str:
    """The HTML page: the template ``view_assets/view.html`` with the stylesheet, the script
    and the data inlined (:mod:`darkfab.scenarios.templating`). ``payload`` is the base64 gzip
    of the chunk (replay) or empty (live: the page polls)."""
    from .templating import asset, render

    cfg = json.dumps({"live": live}, separators=(",", ":"))
    data = json.dumps(meta, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return render("view_assets", "view.html", title=f"darkfab view: {meta.get('scenario')}",
                  style=asset("view_assets", "view.css"),
                  script=asset("view_assets", "view.js"), config=cfg, meta=data,
                  payload=payload)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def encode_chunk(chunk: dict[str, Any]) -> str:
    """gzip + base64 of the chunk's JSON (what the replay page inflates)."""
    raw = json.dumps(chunk, separators=(",", ":"), allow_nan=False).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def write_view(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Write the replay page of ``run_dir`` (default ``run_dir/view.html``); returns its path."""
    run_dir = Path(run_dir)
    meta, chunk = view_chunk(run_dir)
    path = Path(out) if out else run_dir / "view.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(_clean(meta), encode_chunk(chunk), live=False),
                    encoding="utf-8")
    return path
