"""Wiring of a line's digital twin (docs/twin.md): the plant on the true parameters of its
``mismatch`` section, the control system's soft sensor on the nominal ones and the
``instruments`` section's load cells."""

from __future__ import annotations

from darkfab.agents.line import ContinuousLine
from darkfab.factory.flow_clock import FlowLaw
from darkfab.factory.instruments import LoadCellFlow
from darkfab.factory.mismatch import LotDraws, LotVariation
from darkfab.factory.random_streams import RandomStreams
from darkfab.factory.rtd import RTD

from .schema import ContinuousLineSpec

__all__ = ["needs_twin", "wire_twin"]


def needs_twin(spec: ContinuousLineSpec) -> bool:
    """Whether the plant and its model differ (a mismatch, or load cells that are not ideal);
    if not, the line runs as the ideal plant (the model is the plant, no extra cost)."""
    i = spec.instruments
    return not spec.mismatch.is_zero() or i.load_cell_noise_g > 0 or i.load_cell_filter_s > 0


def wire_twin(line: ContinuousLine, spec: ContinuousLineSpec, streams: RandomStreams,
              prefix: str, model_blender_rtd: RTD, model_line_rtd: RTD) -> None:
    """Give ``line`` (built on the true RTDs) its soft sensor on the nominal ``model_*_rtd``,
    its load cells, the per-lot draws, and the plant's true hold-up law apart from the model's
    (the soft sensor then on a flow clock of its own). Random streams: ``{prefix}.feeders.{name}.load_cell``
    and ``{prefix}.mismatch.{name}.lot.{lot}`` (one per raw-material lot)."""
    m, ins = spec.mismatch, spec.instruments
    cells, draws = [], []
    for st in line.stations:
        f = spec.feeders[st.name]
        noisy = ins.load_cell_noise_g > 0
        cells.append(LoadCellFlow(
            ins.load_cell_noise_g / 1000.0, ins.load_cell_filter_s, f.noise_period_s,
            streams.stream(f"{prefix}.feeders.{st.name}.load_cell") if noisy else None))
        v = m.lots.get(st.name)
        var = (LotVariation(v.potency_sd_pct / 100.0, v.bulk_density_sd_pct / 100.0,
                            v.feed_factor_sd_pct / 100.0) if v is not None else LotVariation())
        draws.append(None if var.is_zero() else LotDraws(
            var, lambda lot, n=st.name: streams.stream(f"{prefix}.mismatch.{n}.lot.{lot}")))
    line.set_twin(model_line_rtd, model_blender_rtd, cells, draws,
                  m.screw_wear_pct_per_day / 100.0, m.tablet_content_rsd_pct / 100.0)
    b = spec.blender.speed_exponent  # the line clock's nominal flow exponent is 0 (τ ∝ 1/ṁ)
    line.set_flow_laws(FlowLaw(b + m.blender_speed_exponent_delta, m.blender_flow_exponent_delta),
                       FlowLaw(b))
