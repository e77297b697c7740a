"""The experiment report: design, runs ok/failed, mean and confidence half-width per design
point and KPI, factor-response plots with confidence intervals, and the paired comparisons
against the baseline point (see :func:`darkfab.scenarios.report.write_report`)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from .report_html import (duration, esc, figure_html, fmt, label, meta, num, page, table)
from .report_margins import margin_section

__all__ = ["experiment_report"]


def experiment_report(folder: Path, s: dict[str, Any]) -> str:
    """The HTML page of experiment folder ``folder`` whose summary.json is ``s``."""
    name = s.get("experiment", "?")
    spec = s.get("spec") or {}
    meta_spec = spec.get("experiment") or {}
    scenario = s.get("scenario") or meta_spec.get("scenario") or "?"
    scen_name = Path(str(scenario)).stem
    points: list[dict] = s.get("points") or []
    factors: list[str] = list(s.get("factors") or [])
    levels = _factor_levels(spec, points, factors)
    conf = num(s.get("confidence")) or 0.95
    subtitle = (f"experiment <b>{esc(name)}</b> · scenario <b>{esc(scen_name)}</b> · seed "
                f"{esc(s.get('seed'))} · {len(points)} design point(s) · "
                f"{esc(s.get('runs_ok'))} runs ok, {esc(s.get('runs_failed', 0))} failed")
    warm = s.get("warmup") or {}
    warm_txt = esc(warm.get("method", "scenario"))
    if warm.get("method") == "mser5":
        warm_txt += (f": warm-up {fmt(warm.get('warmup_s'))} s from "
                     f"{esc(warm.get('pilot_replications'))} pilot runs (cuts "
                     f"{', '.join(fmt(c) for c in warm.get('pilot_warmups_s') or [])} s; "
                     f"{'reliable' if warm.get('reliable') else 'NOT reliable'})")
    else:
        warm_txt += " (each run uses the scenario's warm-up"
        ws = [o for o in meta_spec.get("set") or [] if str(o).startswith("scenario.warmup_s")]
        warm_txt += f", set by <code>{esc(ws[-1])}</code>)" if ws else ")"
    reps = sorted({p.get("runs_ok", 0) for p in points})
    rows = [("experiment", esc(name)),
            ("scenario", f"{esc(scen_name)} <code>{esc(scenario)}</code>"),
            ("seed", esc(s.get("seed"))),
            ("replications per point", esc(meta_spec.get("replications", "?"))
             + (f" (ok per point: {', '.join(map(str, reps))})" if reps else "")),
            ("confidence", f"{100 * conf:g} %"),
            ("overrides", ", ".join(f"<code>{esc(o)}</code>" for o in meta_spec.get("set") or [])
             or "–"),
            ("engine", esc(s.get("engine", "?"))),
            ("runs", f"{esc(s.get('runs_ok'))} ok, {esc(s.get('runs_failed', 0))} failed"),
            ("warm-up", warm_txt),
            ("wall time", esc(duration(num(s.get("wall_s")) or 0.0))),
            ("darkfab version", esc(s.get("darkfab_version", "?"))),
            ("folder", f"<code>{esc(folder.resolve())}</code>")]
    sections = [meta(rows)]
    if s.get("partial"):
        sections.append('<p class="warn">Partial experiment: interrupted before all runs '
                        "finished.</p>")
    if spec.get("sequential"):
        sq = spec["sequential"]
        sections.append(f"<p>Sequential replications on <code>{esc(sq.get('kpi'))}</code> up to "
                        f"{esc(sq.get('max_replications'))} per point.</p>")
    # factors
    sec = ["<h2>Factors</h2>"]
    if factors:
        sec.append(table(["factor", "levels"],
                          [[f"<code>{esc(f)}</code>", ", ".join(esc(label(v)) for v in levels[f])]
                           for f in factors], left=2))
    else:
        sec.append('<p class="note">No factors: a single design point.</p>')
    sections.append("\n".join(sec))
    sections.append(_failed_section(s))
    sections.append(_point_table_section(folder, s, points, factors, conf))
    sections.append(_response_section(s, points, factors, levels, conf))
    sections.append(margin_section(s, conf))  # margin sizing (docs/twin.md), or ""
    sections.append(_comparisons_section(folder, s, points, factors))
    return page(f"darkfab experiment report — {name}", subtitle, sections)


def _factor_levels(spec: dict, points: list[dict], factors: list[str]) -> dict[str, list]:
    out: dict[str, list] = {f: [] for f in factors}
    for f in spec.get("factors") or []:
        if isinstance(f, dict) and f.get("path") in out:
            out[f["path"]] = list(f.get("levels") or [])
    for p in points:
        for f in factors:
            v = (p.get("factors") or {}).get(f)
            if all(label(v) != label(w) for w in out[f]):
                out[f].append(v)
    return out


def _failed_section(s: dict[str, Any]) -> str:
    failed = s.get("failed_runs") or []
    head = "<h2>Runs</h2>"
    txt = (f"<p>{esc(s.get('runs_ok'))} runs ok, {esc(s.get('runs_failed', len(failed)))} "
           "failed.</p>")
    if not failed:
        return head + txt
    rows = [[esc(r.get("point")), esc(r.get("replication")),
             f"<code>{esc(r.get('error'))}</code>", f"<code>{esc(r.get('out_dir'))}</code>"]
            for r in failed]
    return head + txt + table(["point", "replication", "error", "run folder"], rows, left=4)


def _point_factor_cells(p: dict, factors: list[str]) -> list[str]:
    return [esc(label((p.get("factors") or {}).get(f))) for f in factors]


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
        cells = [esc(i)] + _point_factor_cells(p, factors) + [esc(p.get("runs_ok", ""))]
        for k in kpis:
            st = stats.get((i, k)) or {}
            m, hw = st.get("mean"), st.get("half_width")
            cells.append(f"{fmt(m)} ± {fmt(hw)}" if m is not None else "–")
        rows.append(cells)
    headers = (["point"] + [f"<code>{esc(f)}</code>" for f in factors] + ["runs ok"]
               + [f"<code>{esc(k)}</code>" for k in kpis])
    return head + table(headers, rows, left=1 + len(factors))


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
    v = num(x)
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
        numeric = all(num(v) is not None for v in levels[f])
        xs_levels = sorted(levels[f], key=float) if numeric else levels[f]
        labels = [label(v) for v in xs_levels]
        pos = {lab: (float(v) if numeric else float(j)) for j, (v, lab) in
               enumerate(zip(xs_levels, labels))}
        # group points by the levels of the other factors (one line per combination)
        groups: dict[str, list[dict]] = {}
        for p in points:
            key = ", ".join(label((p.get("factors") or {}).get(g)) for g in others)
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
                    lab = label((p.get("factors") or {}).get(f))
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
        lines = ", ".join(f"<code>{esc(g)}</code>" for g in others)
        cap = (f"Mean per level of <code>{esc(f)}</code> with {100 * conf:g} % confidence "
               "intervals (error bars)" + (f"; one line per level of {lines}." if others else "."))
        figs.append(figure_html(fig, cap, f"response to {f}"))
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
        return ", ".join(f"{_short(f)}={label((p.get('factors') or {}).get(f))}"
                         for f in factors)

    out, classes = [], []
    for r in rows:
        out.append([esc(r.get("point")), esc(desc(r.get("point"))), esc(r.get("baseline")),
                    f"<code>{esc(r.get('kpi'))}</code>", fmt(r.get("pairs")),
                    fmt(r.get("mean_difference")), fmt(r.get("half_width")),
                    f"[{fmt(r.get('low'))}, {fmt(r.get('high'))}]",
                    "<b>yes</b>" if r.get("significant") else "no"])
        classes.append("hi" if r.get("significant") else "")
    base = by_point.get(rows[0].get("baseline"))
    btxt = (f"<p>Baseline: point {esc(rows[0].get('baseline'))}"
            + (f" ({esc(desc(rows[0].get('baseline')))})" if base and factors else "") + ".</p>")
    return head + btxt + table(["point", "factors", "baseline", "KPI", "pairs",
                                 "mean difference", "half-width", "interval", "significant"],
                                out, left=4, row_classes=classes)
