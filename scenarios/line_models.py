"""The models a continuous line is built from (press, blender RTD, line RTD), apart from the
builder so that ``check`` can build them without the simulator (no SimPy, Mesa or pyarrow)."""

from __future__ import annotations

from darkfab.factory.blender import BlenderParams, blender_rtd
from darkfab.factory.rtd import RTD, SeriesRTD
from darkfab.factory.tablet_press import TabletPress

from .schema import ContinuousLineSpec

__all__ = ["line_models", "line_parts", "true_line_rtds"]


def line_models(spec: ContinuousLineSpec) -> tuple[TabletPress, RTD, RTD]:
    """The press, the blender RTD and the line RTD (blender in series with the press feed frame)
    at the press's mass flow."""
    press, blender, feed_frame = line_parts(spec)
    return press, blender, SeriesRTD([blender, feed_frame], max_points=2**14)


def line_parts(spec: ContinuousLineSpec) -> tuple[TabletPress, RTD, RTD]:
    """The press, the blender RTD and the feed frame's RTD at the press's mass flow (what
    :func:`line_models` puts in series; cheap: ``check`` builds these)."""
    ps = spec.press
    press = TabletPress(
        stations=ps.stations, turret_speed_rpm=ps.turret_speed_rpm,
        die_diameter_m=ps.die_diameter_mm / 1000.0, fill_depth_m=ps.fill_depth_mm / 1000.0,
        fill_density_kg_m3=ps.fill_density_kg_m3, true_density_kg_m3=ps.true_density_kg_m3,
        feed_frame_holdup_kg=ps.feed_frame_holdup_kg, feed_frame_tanks=ps.feed_frame_tanks,
        compaction=ps.compaction, kawakita_a=ps.kawakita_a,
        kawakita_b_per_pa=ps.kawakita_b_per_mpa * 1e-6, heckel_k_per_pa=ps.heckel_k_per_mpa * 1e-6,
        heckel_a=ps.heckel_a, strength=ps.strength, sigma0_pa=ps.sigma0_mpa * 1e6,
        k_rd=ps.k_rd, rho_c=ps.rho_c)
    flow = press.mass_flow_kg_s
    b = spec.blender
    bp = BlenderParams(b.holdup_ref_kg, b.mass_flow_ref_kg_h / 3600.0, b.speed_ref_rpm,
                       b.flow_exponent, b.speed_exponent, b.model, b.n_tanks, b.peclet)
    blender = blender_rtd(bp, flow, b.speed_rpm)
    return press, blender, press.feed_frame_rtd(flow)


def true_line_rtds(spec: ContinuousLineSpec) -> tuple[RTD, RTD]:
    """The plant's true blender RTD and line RTD under the line's ``mismatch`` (docs/twin.md):
    τ × ``blender_tau_factor`` (the hold-up), tanks-in-series n or Péclet number ×
    ``blender_n_factor``; the feed frame as nominal."""
    press, _, feed_frame = line_parts(spec)
    b, m = spec.blender, spec.mismatch
    bp = BlenderParams(b.holdup_ref_kg * m.blender_tau_factor, b.mass_flow_ref_kg_h / 3600.0,
                       b.speed_ref_rpm, b.flow_exponent, b.speed_exponent, b.model,
                       b.n_tanks * m.blender_n_factor, b.peclet * m.blender_n_factor)
    blender = blender_rtd(bp, press.mass_flow_kg_s, b.speed_rpm)
    return blender, SeriesRTD([blender, feed_frame], max_points=2**14)
