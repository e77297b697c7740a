"""``darkfab funnel SCENARIO``: the funnel plot of a scenario's continuous line.

For the configured line RTD (blender in series with the press feed frame, at the press's mass
flow), a square disturbance of the API content at the line inlet, of magnitude Δ (fraction of
label claim) and duration d, peaks at the outlet at Δ·max_t[F(t) − F(t − d)] (García-Muñoz et
al. 2018); material must be diverted when the peak exceeds the nearer spec limit
L = min(1 − spec_low, spec_high − 1). See :mod:`darkfab.factory.funnel`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkfab.factory.funnel import FunnelData, funnel, funnel_figure

from .builder import line_models
from .schema import Scenario

__all__ = ["line_funnel", "write_funnel_png", "default_funnel_path"]

FUNNEL_DIR = Path("results/funnel")


def default_funnel_path(scenario: str, line: str | None = None) -> Path:
    """Where ``darkfab funnel`` writes without ``--out``: ``results/funnel/<scenario>.png``
    (``<scenario>-<line>.png`` for a named line)."""
    return FUNNEL_DIR / (f"{scenario}-{line}.png" if line else f"{scenario}.png")


def line_funnel(s: Scenario, line: str | None = None, n_magnitudes: int = 40,
                n_durations: int = 60) -> tuple[str, FunnelData]:
    """(line name, funnel data) on a grid of Δ from L/2 to 10·L and d from 1 s to 10 × the
    line's mean residence time (log-spaced)."""
    if not s.continuous_lines:
        raise ValueError(f"scenario {s.scenario.name!r} has no continuous line")
    name = line or sorted(s.continuous_lines)[0]
    if name not in s.continuous_lines:
        raise ValueError(f"no continuous line {name!r}; lines: "
                         + ", ".join(sorted(s.continuous_lines)))
    spec = s.continuous_lines[name]
    _, _, rtd = line_models(spec)
    q = spec.quality
    limit = min(1.0 - q.spec_low_pct / 100.0, q.spec_high_pct / 100.0 - 1.0)
    mags = np.linspace(0.5 * limit, 10.0 * limit, n_magnitudes)
    durs = np.geomspace(1.0, 10.0 * rtd.mean_s, n_durations)
    return name, funnel(rtd, mags, durs, limit)


def write_funnel_png(s: Scenario, out: Path, line: str | None = None) -> Path:
    """Draw the funnel plot of ``line`` (default: the first) into the PNG file ``out``
    (its folders are created)."""
    name, data = line_funnel(s, line)
    fig = funnel_figure(data, title=f"{s.scenario.name} / {name}: divert (red) or not (green), "
                                    f"L = {100 * data.limit:g} % of label claim")
    ax = fig.axes[0]
    ax.set_xscale("log")
    ax.set_ylabel("API content disturbance Δ (fraction of label claim)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
