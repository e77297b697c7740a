"""A unit's genealogy covers its whole production interval, however much flow time that is: the
line's lot predictor keeps its history back to the start of the output not yet made into a unit,
beyond the scans' look-back. The case: a fast blender (a unit spans √2 × the flow time at the
nominal speed) and a slow line, with small hoppers so that lots change often."""

from __future__ import annotations

from darkfab.agents.line.output import LineOutput
from darkfab.control import SetPoint
from darkfab.scenarios import load_scenario
from darkfab.scenarios.simulation import Simulation


def test_units_lot_fractions_cover_their_whole_interval(tmp_path, monkeypatch):
    intervals: list[tuple[float, float, float]] = []  # unit start, end, lots' exact-from
    make = LineOutput._make_unit

    def recording(self, now, take_kg):
        intervals.append((self._pending_from, self._routed, self.lots.valid_from))
        return make(self, now, take_kg)

    monkeypatch.setattr(LineOutput, "_make_unit", recording)
    s = load_scenario("cdc-line", ["scenario.horizon_s=172800", "scenario.warmup_s=0",
                                   "continuous_lines.cdc.feeders.excipient.high_level_kg=9.0",
                                   "continuous_lines.cdc.feeders.api.high_level_kg=2.5"])
    sim = Simulation.open(s, out_dir=tmp_path)
    sim.advance_to(3600.0)
    sim.dispatch([SetPoint("cdc.blender", "speed_rpm", 500.0),
                  SetPoint("cdc", "line_rate_kg_h", 16.3)])
    sim.advance_to(172800.0)
    res = sim.close()
    assert not res.summary["partial"]
    assert len(intervals) > 100
    clipped = [(a, b, vf) for a, b, vf in intervals if vf > a + 1e-9 and b > a]
    assert not clipped, f"{len(clipped)} units' lot fractions from a clipped interval: {clipped[:3]}"
