"""Shared pieces of the HTML reports: the page frame and its CSS, table and figure markup, number
and duration formats, PackML state colours, and reading a results folder's ``summary.json``.

Every function returns already-escaped HTML (or plain text for the formats), so report sections
are data in, fragment out; figures are :class:`matplotlib.figure.Figure` objects rendered by the
Agg canvas into base64 PNG data URIs (pyplot is never imported).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from matplotlib.figure import Figure

__all__ = ["CSS", "STATE_COLOURS", "PACKML_ORDER", "RUN_FILES", "EXPERIMENT_FILES",
           "read_summary", "esc", "num", "fmt", "duration", "lookup", "label", "table", "meta",
           "figure_html", "page", "state_colour", "state_order", "time_unit"]

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
    "Suspended (starved)": "#fdae6b",
    "Suspended (blocked)": "#e6550d",
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
                "Suspended", "Suspended (starved)", "Suspended (blocked)", "Suspending",
                "Unsuspending", "Held", "Holding", "Unholding", "Aborted", "Aborting", "Clearing",
                "Stopped", "Stopping")
_EXTRA_COLOURS = ("#17becf", "#bcbd22", "#e377c2", "#8c564b", "#9467bd", "#1f77b4",
                  "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5")

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


def read_summary(folder: Path) -> tuple[str, dict[str, Any]]:
    """``("run" | "experiment", summary)`` of a results folder; ``ValueError`` naming what is
    missing otherwise."""
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
def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def fmt(x: Any, kind: str = "num") -> str:
    """Format a number for a table: ``pct`` as a percentage, ``dur`` as a duration."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if not isinstance(x, (int, float)):
        return esc(x)
    if isinstance(x, float) and math.isnan(x):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if kind == "pct":
        return f"{100.0 * x:.1f} %"
    if kind == "dur":
        return duration(float(x))
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


def duration(s: float) -> str:
    if s is None or not math.isfinite(s):
        return fmt(s)
    if abs(s) < 120:
        return f"{s:.1f} s"
    if abs(s) < 2 * 3600:
        return f"{s / 60:.1f} min"
    if abs(s) < 3 * 86400:
        return f"{s / 3600:.2f} h"
    return f"{s / 86400:.2f} d"


def lookup(d: dict, path: str) -> Any:
    x: Any = d
    for part in path.split("."):
        x = x.get(part) if isinstance(x, dict) else None
    return x


def label(v: Any) -> str:
    """A factor level as text: numbers and strings as they are, anything else as JSON."""
    if isinstance(v, str):
        return v
    if num(v) is not None:
        return f"{v:g}" if isinstance(v, float) else str(v)
    return json.dumps(v, sort_keys=False)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1,
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


def meta(items: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table class="meta">{rows}</table>'


def figure_html(fig: Figure, caption: str = "", alt: str = "figure") -> str:
    """Render ``fig`` to PNG (Agg) and return an HTML <figure> with a data URI."""
    buf = io.BytesIO()
    # no "Software" text chunk: keeps the file free of any URL, even inside the PNG
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    fig.clear()
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">'
            f"{cap}</figure>")


def page(title: str, subtitle: str, sections: list[str]) -> str:
    """The page: the template ``report_assets/report.html`` (blocks of ``base.html``) around
    the sections' HTML fragments (:mod:`darkfab.scenarios.templating`)."""
    from .templating import render

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return render("report_assets", "report.html", title=title, subtitle=subtitle, css=CSS,
                  sections=sections, stamp=stamp)


def state_colour(state: str, extra: dict[str, str]) -> str:
    if state in STATE_COLOURS:
        return STATE_COLOURS[state]
    if state not in extra:
        extra[state] = _EXTRA_COLOURS[len(extra) % len(_EXTRA_COLOURS)]
    return extra[state]


def state_order(states: Iterable[str]) -> list[str]:
    states = set(states)
    return [s for s in PACKML_ORDER if s in states] + sorted(states - set(PACKML_ORDER))


def time_unit(span_s: float) -> tuple[float, str]:
    return (86400.0, "d") if span_s > 72 * 3600 else (3600.0, "h")

