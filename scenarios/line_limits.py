"""Numerical limits of the continuous-line models, checked before a run.

``check`` must reject whatever ``run`` would: the run builds each line's press, blender RTD and
line RTD (:func:`darkfab.scenarios.line_models.line_models`), and these models refuse some inputs
that every field accepts on its own (a press whose draw underflows to 0 kg/s, a closed–closed
blender whose Péclet number the RTD inversion cannot handle). This module states those limits
with the field to change, then builds the press and the two RTD stages the run puts in series
(not the series itself: its numerical convolution adds nothing a stage would not refuse) and
reports anything they still refuse. The models are imported only for scenarios that have a continuous line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from .schema import Scenario

__all__ = ["line_limit_errors"]


def line_limit_errors(s: Scenario) -> Iterator[tuple[str, str]]:
    """Yield ``(path, message)`` for every continuous line its models cannot run."""
    if not s.continuous_lines:
        return
    from darkfab.factory.rtd import CLOSED_PECLET_MAX, CLOSED_PECLET_MIN

    from .line_models import line_parts

    for name, line in s.continuous_lines.items():
        p = f"continuous_lines.{name}"
        flow = line.mass_flow_kg_s()
        if not (math.isfinite(flow) and flow > 0):
            yield (f"{p}.press", f"the press draws {flow:g} kg/s (stations × turret speed × "
                   "fill density × die area × fill depth): it must be a positive, finite mass "
                   "flow")
            continue
        b = line.blender
        if b.model == "closed" and not CLOSED_PECLET_MIN <= b.peclet <= CLOSED_PECLET_MAX:
            yield (f"{p}.blender.peclet", f"a closed-closed blender needs {CLOSED_PECLET_MIN:g} "
                   f"<= peclet <= {CLOSED_PECLET_MAX:g} (got {b.peclet:g}): outside it the "
                   "RTD cannot be computed accurately; use model = \"open\" or \"tanks\"")
            continue
        try:
            _, blender, feed_frame = line_parts(line)
            # the line RTD is their series: its tail is finite when both tails are
            tau, tail = blender.mean_s, blender.tail_s + feed_frame.tail_s
        except (ValueError, RuntimeError, ArithmeticError) as e:
            yield (p, f"the line's press and blender models cannot be built: {e}")
            continue
        if not (math.isfinite(tau) and tau > 0):
            yield (f"{p}.blender", f"the blender's mean residence time is {tau:g} s at the "
                   f"press's draw of {flow:g} kg/s: it must be positive and finite (check "
                   "holdup_ref_kg and the exponents)")
        elif not math.isfinite(tail):
            yield (f"{p}.blender", "the line's residence time distribution has no finite tail")
