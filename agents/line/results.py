"""Results of a continuous line: its KPIs (tablets, content, state of control, diversion,
refills, PAT, tablet, RTD, batches, IPC, weight loop, press hopper) and the mass balance
fed + initial press-hopper level = accepted + diverted + hold-up + press-hopper level (QC
samples are part of accepted)."""

from __future__ import annotations

import math

__all__ = ["LineResults"]


class LineResults:
    """Mixin of :class:`~darkfab.agents.line.ContinuousLine`: KPIs and mass balance."""

    def kpis(self, end: float) -> dict:
        """Line KPIs over the whole run (start-up included): tablets, API content of the units
        made, state of control, diversion by cause, refills, PAT, mass balance."""
        w = self.tablet.weight_kg
        q = self.q
        mean = q.sum_c / q.n if q.n else math.nan
        var = (q.sum_c2 - q.n * mean * mean) / (q.n - 1) if q.n > 1 else math.nan
        diverted = sum(q.by_cause.values())
        b = self.batch
        batches = self.batches + [{"batch": b.id, "start_s": b.start_s, "end_s": end,
                                   "accepted_kg": b.accepted_kg - b.qc_kg, "qc_kg": b.qc_kg,
                                   "units": b.units, "open": True,
                                   "ipc": {"weight_mg": self.batch_weight.summary(),
                                           "content_pct": self.batch_content.summary()}}]
        t = self.tablet
        return {
            "line_rate_kg_h": self.nominal_kg_s * 3600.0,
            "tablets_produced": self.output_kg / w,
            "tablets_accepted": (self.accepted_kg - self.qc_samples_kg) / w,
            "tablets_diverted": diverted / w,
            "accepted_fraction": (self.accepted_kg / self.output_kg if self.output_kg > 0
                                  else math.nan),  # the yield (mass)
            "qc_sample_tablets": self.qc_samples_kg / w,
            "units_out": self.units_out,
            "partial_units": self.partial_units,  # part-filled units closed at batch ends
            "tablets_in_units": self.tablets_in_units,
            "weight_loop": {"enabled": self.weight_loop is not None,
                            "samples": self.loop_samples,
                            "tablet_weight_mg": self.weight_kg * 1e6,
                            "target_weight_mg": self.target_weight_kg * 1e6,
                            "fill_depth_mm": self.fill_depth_m * 1e3},
            "api_content_mean_pct": 100.0 * mean,
            "api_content_accepted_pct": 100.0 * self.api_accepted_kg / self.accepted_kg
            / self.api_share if self.accepted_kg > 0 else math.nan,
            "api_content_rsd_pct": 100.0 * math.sqrt(max(var, 0.0)) / mean if q.n > 1 else math.nan,
            "state_of_control_fraction": self.accepting_s / end if end > 0 else math.nan,
            "diverted_kg": diverted,
            "released_out_of_spec_kg": self.released_oos_kg,
            "released_out_of_spec_samples": self.released_oos_samples,
            # expected accepted tablets whose true API content is out of spec (ControlStrategy._audit)
            "released_out_of_spec_tablets": self.released_oos_tablets,
            # the twin's breakdown of released_out_of_spec_kg by cause (ControlStrategy._attribute)
            **({"released_out_of_spec_kg_by_cause": dict(sorted(
                self.released_oos_by_cause.items()))}
               if self.released_oos_by_cause is not None else {}),
            "diverted_kg_by_cause": dict(sorted(q.by_cause.items())),
            "out_of_spec_events": self.oos_events,
            "refills": {st.name: st.refills for st in self.stations},
            # what a container still held when the hopper reached its high level (returned)
            "container_leftover_kg": {
                st.name: st.delivered_kg - st.feeder.refilled_kg - st.feeder.refill_leftover_kg
                for st in self.stations},
            "refill_induced_deviations": self.refill_deviations,
            "line_stops": self.stops,
            "time_in_state_s": dict(sorted(self.timer.time_s.items())),
            "pat": {"samples": self.pat_samples, "dropouts": self.pat_dropouts,
                    "alarms": self.pat_alarms, "alarm_rule": {
                        "rule": self.pat_rule.rule, "k": self.pat_rule.k, "n": self.pat_rule.n},
                    # the rule's verdicts against the true content of the sampled material
                    "confusion": self.pat_rule.confusion.as_dict()},
            "tablet": {"weight_mg": t.weight_kg * 1e6, "relative_density": t.rel_density,
                       "porosity": t.porosity, "thickness_mm": t.thickness_m * 1e3,
                       "tensile_strength_mpa": t.tensile_strength_pa / 1e6,
                       "breaking_force_n": t.breaking_force_n},
            "rtd": {"mean_s": self.rtd.mean_s, "std_s": self.rtd.std_s,
                    "tail_s": self.rtd.tail_s, "blender_mean_s": self.blender_rtd.mean_s},
            # the plant's true RTD when it differs from the model's (docs/twin.md)
            **({"rtd_true": {"mean_s": self.plant_rtd.mean_s, "std_s": self.plant_rtd.std_s,
                             "blender_mean_s": self.plant_blender_rtd.mean_s}}
               if self.soft is not None else {}),
            "batches": batches,
            "mass_balance": self.mass_balance(end),
            "continuous_model_wall_s": self.continuous_wall_s,
            "continuous_model_cpu_s": self.continuous_cpu_s,
            **({"punch_wear": self.maintenance_kpis(end)} if self.wear is not None else {}),
            **self.hopper_kpis(end),
        }

    def mass_balance(self, now: float) -> dict[str, float]:
        """fed = accepted + diverted + hold-up + QC samples (kg) and the relative error."""
        fed = sum(st.feeder.fed_kg for st in self.stations)
        holdup = self.engine.holdup_kg(now)
        diverted = sum(self.q.by_cause.values())
        out = self.accepted_kg + diverted
        h0, h1 = self.hopper_balance_kg()  # the press hopper (:mod:`.hopper`)
        err = fed + h0 - (out + holdup + h1)
        return {"fed_kg": fed, "accepted_kg": self.accepted_kg - self.qc_samples_kg,
                "diverted_kg": diverted, "holdup_kg": holdup, "qc_samples_kg": self.qc_samples_kg,
                **({"press_hopper_initial_kg": h0, "press_hopper_kg": h1}
                   if self.hopper is not None else {}),
                "rel_error": abs(err) / fed if fed > 0 else 0.0}
