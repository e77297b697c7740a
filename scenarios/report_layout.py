"""``darkfab plot layout`` and the report's layout figure: the plant graph to scale, nodes
coloured by role, links coloured by lane usage when the run had robots.

Legible at any size: up to :data:`LABEL_LIMIT_NODES` nodes every node is named, with its
residents (equipment, buffers, sources, sinks) and every link's length; past it, only the nodes
that are not plain waypoints keep a small name (if they too are fewer than the limit), markers
shrink with the number of nodes, and link lengths are left out. ``labels=True`` forces every
label, ``labels=False`` drops them all.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch

from .report_html import num, read_summary

__all__ = ["ROLE_COLOURS", "LABEL_LIMIT_NODES", "lane_usage", "layout_figure",
           "write_layout_png"]

ROLE_COLOURS = {"station": "#4c72b0", "port": "#2a9df4", "waypoint": "#a0a0a0",
                "storage": "#b07c4c", "dock": "#55a868", "charger": "#f2c12e",
                "parking": "#8172b2", "holding": "#d65f5f"}
LABEL_LIMIT_NODES = 60
"""Past this many nodes the layout is drawn without link lengths, waypoint names and residents."""
LANE_COUNT_KEYS = ("usage", "trips", "traversals", "count", "uses", "busy_s", "utilization")


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
        if num(v) is not None:
            return float(v)
        if isinstance(v, dict):
            for k in LANE_COUNT_KEYS:
                if num(v.get(k)) is not None:
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


def write_layout_png(folder: str | Path, out: str | Path | None = None,
                     labels: bool | None = None) -> Path:
    """``darkfab plot layout``: the plant layout of a run (nodes by role, lanes, stations,
    lane usage as a heat map when the run had robots) as a PNG; default FOLDER/layout.png.
    The folder of ``out`` is created if missing. ``labels``: see :func:`layout_figure`."""
    folder = Path(folder)
    kind, s = read_summary(folder)
    if kind != "run":
        raise ValueError(f"{folder}: a run folder is needed (this is an experiment folder)")
    made = layout_figure(s, labels)
    if made is None:
        raise ValueError(f"{folder}: the resolved scenario has no nodes")
    path = Path(out) if out else folder / "layout.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    made[0].savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
    return path


def label_policy(nodes: dict[str, dict], labels: bool | str | None
                 ) -> tuple[bool, set[str]]:
    """``(full, named)``: whether link lengths and residents are drawn, and which nodes are
    named. ``labels=None`` decides by size (:data:`LABEL_LIMIT_NODES`): a small layout gets
    every label; a large one names only its nodes that are not waypoints (if they are few).
    ``"names"`` names the nodes as ``None`` would but never draws lengths or residents."""
    if labels == "names":
        full, named = label_policy(nodes, None)
        return False, named
    if labels is True or (labels is None and len(nodes) <= LABEL_LIMIT_NODES):
        return True, set(nodes)
    if labels is False:
        return False, set()
    named = {n for n, v in nodes.items() if (v.get("role") or "station") != "waypoint"}
    return False, named if len(named) <= LABEL_LIMIT_NODES else set()


def layout_figure(s: dict[str, Any], labels: bool | str | None = None, *,
                  lane_values: dict[tuple[str, str], float] | None = None,
                  lane_label: str = "lane usage (unused links dashed grey)",
                  node_values: dict[str, float] | None = None,
                  node_label: str = "") -> tuple[Figure, str] | None:
    """The layout figure and its caption from a run's ``summary.json`` (``None`` if the
    scenario has no nodes). ``labels``: ``None`` (default) labels by the layout's size (see
    :func:`label_policy`), ``True`` every node and link, ``False`` none.

    ``lane_values`` (by ``(a, b)``) colour the links instead of the summary's lane usage, with
    ``lane_label`` on the colour bar; ``node_values`` draw a red ring around each node with a
    positive value, its area proportional to the value (``node_label`` names it in the
    legend)."""
    rs = s.get("resolved_scenario") or {}
    nodes: dict[str, dict] = rs.get("nodes") or {}
    links: list[dict] = rs.get("links") or []
    if not nodes:
        return None
    full, named = label_policy(nodes, labels)
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
    usage = lane_values if lane_values is not None else lane_usage(s)
    xs, ys = zip(*pos.values())
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    # data box with room for the labels (names above, residents below each node)
    x_lo, x_hi = min(xs) - 0.08 * span - 2.0, max(xs) + 0.08 * span + 2.0
    y_lo, y_hi = min(ys) - 0.1 * span - 2.0, max(ys) + 0.08 * span + 2.0
    n_nodes = len(nodes)
    big = n_nodes > LABEL_LIMIT_NODES
    w = 14.0 if big else 10.0
    h = min(max(2.6, 0.85 * w * (y_hi - y_lo) / (x_hi - x_lo)), 12.0 if big else 9.0) + 0.8
    if usage:
        h += 0.8  # colour bar
    # marker area (points²): 160 up to the label limit, then shrinking with the node count
    marker = 160.0 if not big else max(18.0, 160.0 * LABEL_LIMIT_NODES / n_nodes)
    shrink = math.sqrt(marker) / 1.4  # keep arrow heads outside the markers (points)
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
        colour, lw, ls = "#888", 1.6 if not big else 1.0, "-"
        if usage is not None and cmap is not None and norm is not None:
            u = usage.get((a, b), 0.0) + (0.0 if directed else usage.get((b, a), 0.0))
            if u > 0:
                colour, lw = cmap(norm(u)), 1.5 + 4.0 * norm(u)
            else:
                colour, lw, ls = "#aaa", 1.0 if not big else 0.6, "--"
        ax.add_patch(FancyArrowPatch((xa, ya), (xb, yb),
                                     arrowstyle="-|>" if directed else "-",
                                     mutation_scale=14 if not big else 9, color=colour, lw=lw,
                                     linestyle=ls, shrinkA=shrink, shrinkB=shrink, zorder=1))
        if full:
            length = num(ln.get("length_m"))
            if length is None:
                length = math.hypot(xb - xa, yb - ya)
            ax.text((xa + xb) / 2, (ya + yb) / 2, f"{length:.1f} m", fontsize=7, color="#555",
                    ha="center", va="center", zorder=2,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.8})
    roles: dict[str, list[str]] = {}
    for n in nodes:
        roles.setdefault(nodes[n].get("role") or "station", []).append(n)
    for role, members in sorted(roles.items()):
        ax.scatter([pos[n][0] for n in members], [pos[n][1] for n in members], s=marker,
                   color=ROLE_COLOURS.get(role, "#8172b2"), edgecolor="#222",
                   linewidth=0.8 if not big else 0.5, zorder=3)
    rings = {n: v for n, v in (node_values or {}).items() if n in pos and v > 0}
    ring_top = max(rings.values(), default=1.0)
    offset = 9 if full else 2 + math.sqrt(marker) / 2
    small = n_nodes <= LABEL_LIMIT_NODES
    for n in nodes:
        x, y = pos[n]
        if n in named:
            # above the ring, if any (a ring's radius in points is half its diameter)
            up = max(offset, 2 + math.sqrt(marker + 900.0 * rings[n] / ring_top) / 2) \
                if n in rings else offset
            ax.annotate(n, (x, y), xytext=(0, up), textcoords="offset points", ha="center",
                        va="bottom", fontsize=9 if full or small else 7,
                        fontweight="bold" if full or small else "normal", zorder=4,
                        bbox=None if full or small else {"boxstyle": "round,pad=0.1",
                                                         "fc": "white", "ec": "none",
                                                         "alpha": 0.7})
        if full and at[n]:
            ax.annotate("\n".join(t for _, t in at[n]), (x, y), xytext=(0, -10),
                        textcoords="offset points", ha="center", va="top", fontsize=7.5,
                        color="#333", zorder=4,
                        bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#ccc",
                              "alpha": 0.85})
    handles = [Line2D([], [], marker="o", ls="", markersize=9, markeredgecolor="#222",
                      color=ROLE_COLOURS.get(r, "#8172b2"), label=f"{r} ({len(roles[r])})")
               for r in sorted(roles)]
    if rings:
        ax.scatter([pos[n][0] for n in rings], [pos[n][1] for n in rings],
                   s=[marker + 900.0 * v / ring_top for v in rings.values()], facecolor="none",
                   edgecolor="#c0392b", linewidth=1.6, zorder=5)
        handles.append(Line2D([], [], marker="o", ls="", markersize=12, markerfacecolor="none",
                              markeredgecolor="#c0392b", label=node_label or "node value"))
    ax.legend(handles=handles, title="node role", fontsize=8, title_fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if usage is not None and cmap is not None and norm is not None:
        from matplotlib.cm import ScalarMappable
        sm = ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, label=lane_label,
                     orientation="horizontal", fraction=0.06, shrink=0.5, pad=0.18 if full
                     else 0.1)
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
    if not full:
        cap += (f" {n_nodes} nodes: link lengths, residents and waypoint names are left out "
                "(<code>darkfab plot layout --labels</code> draws them).")
    return fig, cap
