"""The margin-sizing plot of an experiment report (docs/twin.md): released out-of-spec material
and yield against the diversion margin, one line per mismatch magnitude, with the confidence
intervals over replications as error bars. Drawn when the experiment varies a line's
``quality.margin_s`` (or ``quality.guard_band_pct``) and reports its released out-of-spec
KPIs (``scenarios/experiments/margin-sizing.toml``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .report_html import esc, figure_html

__all__ = ["margin_section"]

_MARGINS = ("quality.margin_s", "quality.guard_band_pct")
_RESPONSES = (("released_out_of_spec_kg", "released out of spec (kg)"),
              ("released_out_of_spec_tablets", "released out-of-spec tablets"),
              ("accepted_fraction", "yield (accepted fraction)"))


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _find(paths: list[str], suffix: str) -> str | None:
    return next((p for p in paths if p.startswith("continuous_lines.") and p.endswith(suffix)),
                None)


def margin_section(s: dict[str, Any], conf: float) -> str:
    """The HTML section of the plot, or "" when the experiment is not a margin sizing (an
    experiment summary ``s``; ``conf``: its confidence level). The t-interval of a released
    quantity is drawn from max(0, low) to high (it cannot be negative)."""
    factors: list[str] = list(s.get("factors") or [])
    kpis: list[str] = list(s.get("kpis") or [])
    points: list[dict] = s.get("points") or []
    x_path = _find(factors, _MARGINS[0]) or _find(factors, _MARGINS[1])
    responses = [(k, lab) for key, lab in _RESPONSES
                 if (k := _find(kpis, "." + key)) is not None]
    if x_path is None or not responses or not points:
        return ""
    others = [f for f in factors if f != x_path]
    scale = _find(others, "mismatch.scale")
    rows = [f for f in others if f != scale]  # e.g. the guard band: one row of panels each

    def key(p: dict, fs: list[str]) -> tuple:
        return tuple(str((p.get("factors") or {}).get(f)) for f in fs)

    row_keys = sorted({key(p, rows) for p in points})
    fig = Figure(figsize=(4.0 * len(responses), 3.2 * len(row_keys)))
    axes = fig.subplots(len(row_keys), len(responses), squeeze=False)
    for r, rk in enumerate(row_keys):
        groups: dict[tuple, list[dict]] = {}
        for p in points:
            if key(p, rows) == rk:
                groups.setdefault(key(p, others if scale is None else [scale]), []).append(p)
        for c, (k, lab) in enumerate(responses):
            ax = axes[r][c]
            for g, pts in sorted(groups.items(), key=lambda kv: [_num(v) for v in kv[0]]):
                data = sorted(((_num((p.get("factors") or {}).get(x_path)),
                                _num(((p.get("kpis") or {}).get(k) or {}).get("mean")),
                                _num(((p.get("kpis") or {}).get(k) or {}).get("half_width")))
                               for p in pts))
                x, y, e = (np.array(v) for v in zip(*data))
                e = np.where(np.isfinite(e), e, 0.0)
                # released out of spec is never negative: the bar stops at 0
                low = np.minimum(e, np.maximum(y, 0.0)) if "released" in k else e
                ax.errorbar(x, y, yerr=np.vstack([low, e]), marker="o", ms=4,
                            capsize=3, lw=1.3,
                            label=f"mismatch × {g[0]}" if scale is not None else ", ".join(g))
            title = lab + ("" if not rows else " · " + ", ".join(
                f"{f.rsplit('.', 1)[-1]} = {v}" for f, v in zip(rows, rk)))
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(x_path.rsplit(".", 1)[-1], fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            if r == 0 and c == 0:
                ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Margin sizing: released out of spec and yield against the margin", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    cap = (f"Mean over replications with {100 * conf:g} % confidence intervals (error bars) "
           f"against <code>{esc(x_path)}</code>; one line per mismatch magnitude"
           + (", one row per " + ", ".join(f"<code>{esc(f)}</code>" for f in rows)
              if rows else "") + ". Released out of spec is from the truth audit (docs/twin.md).")
    return "<h2>Margin sizing</h2>" + figure_html(fig, cap, "margin sizing")
