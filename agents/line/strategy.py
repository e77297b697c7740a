"""The control strategy of a continuous line (ICH Q13): scan the model's predicted API content
and output flow for excursions from spec, book diversion windows (model and PAT), route the
output to accepted or diverted, audit the accepted material, and project the next exit from
spec as a wake-up at its computed time.

Diversion window: material whose predicted content is outside the acceptance limits
[spec_low + guard_band, spec_high − guard_band] (guarded acceptance, JCGM 106:2012 §8: the
guard band covers the model's error in content) or leaving at less than
``min_flow_fraction`` of nominal, padded by ``margin_s`` either side (its error in time;
García-Muñoz et al. 2018, AIChE J 64:511; Engisch & Muzzio 2016, J Pharm Innov 11:64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from darkfab.factory.diversion import clear_of_limits, out_of_spec_intervals, scan_grid
from darkfab.factory.instruments import LoadCellFlow
from darkfab.factory.mismatch import LotDraws
from darkfab.factory.rtd import RTD

from .soft_sensor import SoftSensor

__all__ = ["ControlStrategy"]

_NO_TIMES = np.zeros(0)
_ATTRIBUTE_S = 60.0  # the model "saw" an excursion within this time of a released sample (s)


class ControlStrategy:
    """Mixin of :class:`~darkfab.agents.line.ContinuousLine`: scan, divert, route, project."""

    #: the control system's model of the output (:meth:`set_twin`); ``None``: the plant's own
    #: predictor is the model (no mismatch, ideal load cells: the ideal plant)
    soft: SoftSensor | None = None
    lot_draws: list[LotDraws | None] | None = None  # per station: true lot properties
    tablet_rsd = 0.0  # tablet-to-tablet API content variation (fraction) in the truth audit
    released_oos_tablets = 0.0  # expected accepted tablets out of spec (_audit)
    #: released out-of-spec kg by cause (:meth:`_attribute`; the twin only)
    released_oos_by_cause: dict[str, float] | None = None

    def set_twin(self, model_rtd: RTD, model_blender_rtd: RTD, load_cells: Sequence[LoadCellFlow],
                 lot_draws: Sequence[LotDraws | None], wear_per_day: float,
                 tablet_rsd: float) -> None:
        """Make the plant and its model two things (docs/twin.md): the line was built on the
        true RTD (its engine is the plant); the control strategy from now on scans the soft
        sensor's prediction from the measured feed (``load_cells``) through the nominal
        ``model_rtd``, its scan grid and causes use the nominal RTD, and the truth audit and the
        NIR see the plant, with each API lot's true potency from ``lot_draws``."""
        self.plant_rtd, self.plant_blender_rtd = self.rtd, self.blender_rtd
        self.rtd, self.blender_rtd = model_rtd, model_blender_rtd
        self._scan_step_s = model_rtd.std_s / 10.0
        self.lot_draws = list(lot_draws)
        self.tablet_rsd = tablet_rsd
        self.soft = SoftSensor(self.stations, model_rtd, self.flow, self.engine.comp.lookback_s,
                               load_cells, [None if d is None else d.ff_multiplier
                                            for d in self.lot_draws], wear_per_day)
        self.engine.observer = self.soft
        self.released_oos_by_cause = {}
        for k, st in enumerate(self.stations):  # the lots in the hoppers at the start
            for lot in st.feeder.lots:
                self._draw_potency(k, lot)

    def _draw_potency(self, k: int, lot) -> None:
        """The true potency of ``lot`` fed by station ``k`` (API feeders with lot variation)."""
        d = self.lot_draws[k] if self.lot_draws is not None else None
        if d is not None and self.stations[k].component == "api":
            p = d(lot).potency
            if p != 1.0:
                self.lot_potency[lot] = p

    def _content(self, y: np.ndarray, ts: np.ndarray,
                 api_idx: list[int] | None = None) -> np.ndarray:
        """API content (fraction of label claim) of the output rows ``y`` at times ``ts`` (flows
        per flow-second, :mod:`darkfab.factory.flow_clock`); NaN where the flow is below
        ``min_flow_fraction`` of the flow at the commanded rate (per flow-second: the nominal
        flow, ÷ the blender-speed factor when the speed was changed). ``api_idx``: the columns
        of ``y`` that carry API (default: the plant's component predictor's)."""
        tot = y.sum(axis=1)
        api_idx = self._api_idx if api_idx is None else api_idx
        thr = self.quality_spec.min_flow_fraction * self.nominal_kg_s
        if not self.flow.uniform_speed():
            thr = thr / self.flow.speed_factors(ts)
        api = y[:, api_idx[0]] if len(api_idx) == 1 else y[:, api_idx].sum(axis=1)
        if self.quality_spec.min_flow_fraction > 0:  # dividing by NaN where the flow is too low
            return api / np.where(tot >= thr, tot, np.nan) / self.api_share
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot >= thr, api / tot / self.api_share, np.nan)

    def _scan(self, now: float, route_until: float | None = None,
              ahead: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Book diversion windows for the elapsed interval: model-predicted content and flow out
        of spec, and out-of-spec PAT readings available by now. The scan grid, the PAT sample
        times and (with ``route_until``) the audit grid of the output to be routed next, up to
        ``route_until``, are evaluated in one predictor call (Brent's refinement of a crossing
        evaluates single points). ``ahead``: rows of the feed since the last sync
        (:meth:`HybridEngine.ahead_rows`; the reference mode's scans between syncs)."""
        q = self.quality_spec
        a = max(self._scanned, self.comp.valid_from)
        scan = now > a
        step = self._scan_step_s  # the output cannot vary faster: its RTD smooths it
        sensor = self.sensor
        ts = scan_grid(a, now, step) if scan else _NO_TIMES
        pat_ts = (sensor.sample_times(now - sensor.p.delay_s) if scan and sensor is not None
                  else _NO_TIMES)
        r0 = self._routed
        audit = route_until is not None and route_until > r0
        au_ts = scan_grid(r0, route_until, step) if audit else _NO_TIMES
        if not (scan or audit):
            return
        n1, n2 = ts.size, ts.size + pat_ts.size
        all_t = np.concatenate([ts, pat_ts, au_ts])
        out = self.comp.output if ahead is None else (
            lambda t: self.comp.output_with(t, *ahead))
        soft = self.soft
        o = 0 if soft is None else n1  # the plant is evaluated from all_t[o] on
        y = out(all_t[o:])
        c_all = self._content(y, all_t[o:])
        if n2 < all_t.size or pat_ts.size:  # what the sensor and the audit see: the plant
            true = self._true_content(all_t[n1:], c_all[n1 - o:])
        if audit:  # flows in kg/s of clock time: × the flow-time rate
            self._audit_samples = (r0, route_until, au_ts, y[n2 - o:].sum(axis=1)
                                   * self.flow.rates(au_ts), true[n2 - n1:])
        if not scan:
            return
        if soft is None:  # the model is the plant
            g = lambda ts: self._content(out(ts), ts)  # noqa: E731
            c_model = c_all[:n1]
        else:  # the control system's model: measured feed through the nominal RTD
            g = lambda ts: self._content(soft.output(ts), ts, soft.api_idx)  # noqa: E731
            c_model = g(ts)
        going_on, self._oos_going_on = self._oos_going_on, False
        for lo, hi in out_of_spec_intervals(g, a, now, q.accept_low, q.accept_high, step,
                                            xtol_s=1e-3, values=c_model, grid=ts):
            cause, more = self._cause(lo), ""
            if going_on and lo <= a:  # the excursion under way at the last scan goes on
                more = " (continued)"
            else:
                self.oos_events += 1
                self._alarm(now, "", "predicted_oos", f"predicted API content or flow out of "
                            f"spec from {lo:.1f} s ({cause}): diverting", "medium")
                if cause == "refill":
                    self.refill_deviations += 1
            going_on = False
            self.gate.add_window(lo - q.margin_s, hi + q.margin_s, cause)
            self.model.log.record(now, "divert", self.name, -1, "", self.node,
                                  f"{cause}{more} [{lo:.3f}, {hi:.3f}]")
            if hi >= now:
                self._oos_going_on = True
        if pat_ts.size:
            x_pat = true[:n2 - n1]  # NaN: flow too low to read
            readable = np.isfinite(x_pat)
            t_s, t_av, val = sensor.measure_array(x_pat, notify=self._apart)
            if self.calibration_log is not None:  # sensor data for calibration
                self.calibration_log.nir(t_s, t_av, val)
            ok = np.flatnonzero(np.isfinite(val))
            self._nir_seen(val[ok])
            if ok.size:
                self.last_nir = (float(t_av[ok[-1]]), float(val[ok[-1]]))
                if q.spec_low <= self.last_nir[1] <= q.spec_high:  # back in spec
                    self._alarm_clear(now, "pat", "api_content_oos")
            lost = np.isnan(val)
            self.pat_samples += int(readable.sum())
            self.pat_dropouts += int((readable & lost).sum())
            rule = self.pat_rule
            with np.errstate(invalid="ignore"):
                truth = ~((x_pat >= q.spec_low) & (x_pat <= q.spec_high))
            seen = np.flatnonzero(readable & ~lost)
            for i, t0 in rule.feed_many(t_s[seen].tolist(), val[seen].tolist(),
                                        truth[seen].tolist()):
                i = int(seen[i])
                if not self.gate.is_diverting(float(t_av[i])):
                    self.pat_alarms += 1
                    self._alarm(now, "pat", "api_content_oos",
                                f"NIR API content {100 * float(val[i]):.2f} % at "
                                f"{float(t_s[i]):.1f} s, outside the spec ({rule.rule})",
                                "critical")
                    self.model.log.record(now, "pat_alarm", self.name, -1, "",
                                          self.node, f"{float(val[i]):.4f} at "
                                          f"{float(t_s[i]):.1f}")
                # back to the last good reading before the rule's evidence: with a single
                # reading that material has not reached the gate yet (lag_s ≥ period + delay);
                # a k-of-n or moving-average rule may find it gone (the audit counts it)
                self.gate.add_window(t0 - sensor.p.period_s,
                                     float(t_av[i]) + q.pat_hold_s, "pat")
        if not self._oos_going_on:
            self._alarm_clear(now, "", "predicted_oos")
        self._scanned = now

    def _cause(self, t: float, prune: bool = True) -> str:
        """Why the output at ``t`` left spec: the line stopped or restarting, a refill in the
        RTD's reach (its volumetric feed drifts), or another disturbance (feed noise).
        ``prune``: forget the refill windows too old for ``t`` (times scanned in order)."""
        if not self.running:
            return "stop"
        if t < self._restarted + self.rtd.tail_s:
            return "start-up"
        lag = self.rtd.tail_s
        while prune and self._refill_windows and self._refill_windows[0][1] < t - 2 * lag:
            self._refill_windows.popleft()
        if any(a <= t and b >= t - lag for a, b in self._refill_windows) or any(
                st.refill_from is not None and st.refill_from <= t for st in self.stations):
            return "refill"
        return "disturbance"

    def _route(self, until: float) -> None:
        """Send the output up to ``until`` to accepted or diverted by the gate's windows (the
        masses between all window boundaries from one predictor evaluation)."""
        a = self._routed
        if until <= a:
            return
        cuts = sorted({a, until, *(x for w in self.gate.windows for x in w[:2] if a < x < until)})
        masses = self._pressed_masses(cuts, self.comp.output_masses(cuts))  # .hopper
        tots = masses.sum(axis=1).tolist()
        apis = (masses[:, self._api_idx[0]] if len(self._api_idx) == 1
                else masses[:, self._api_idx].sum(axis=1)).tolist()
        acc_mask = np.zeros(len(cuts) - 1, dtype=bool)
        for k, (x, y) in enumerate(zip(cuts[:-1], cuts[1:])):
            tot = tots[k]
            self.output_kg += tot
            cause = self.gate.cause_at(0.5 * (x + y))
            if cause is None:
                self.accepted_kg += tot
                self.api_accepted_kg += apis[k]
                if self._pending_kg <= 0:
                    self._pending_from = x
                self._pending_kg += tot
                self._pending_api_kg += apis[k]
                self.batch.accepted_kg += tot
                self.accepting_s += y - x
                acc_mask[k] = True
            else:
                self.q.by_cause[cause] = self.q.by_cause.get(cause, 0.0) + tot
                self.diverting_s += y - x
        if acc_mask.any():
            self._audit(cuts, acc_mask)
        self._routed = until
        self.gate.prune(until)

    def _audit(self, cuts: list[float], accepted: np.ndarray) -> None:
        """Independent check of accepted material: the content sampled every σ/10 over the
        routed interval [cuts[0], cuts[-1]] (its own grid, not the scan's; evaluated with the
        scan, :meth:`_scan`); the mass of every sample that falls in accepted material
        (the pieces between ``cuts`` with ``accepted`` set) and is outside spec
        (or at too low a flow) is booked as released out of spec (sample flow × grid step).
        The control strategy should keep this at zero.

        Tablets: each accepted sample's mass is m = flow × step, N = m/w tablets of the mean
        weight w, each with the true API content c·(1 + δ), δ ~ N(0, ``tablet_rsd``²) (the
        tablet-scale variation at compression). ``released_oos_tablets`` adds the expected count
        out of spec, N·[Φ((L − c)/(σc)) + Φ((c − U)/(σc))] with σ = ``tablet_rsd`` (an expected
        count from the per-sample normal distribution, not a draw); with σ = 0, N where c is out
        of spec (the released mass out of spec / w); at too low a flow, every tablet."""
        q = self.quality_spec
        smp = self._audit_samples
        self._audit_samples = None
        if smp is None or smp[0] != cuts[0] or smp[1] != cuts[-1]:  # not sampled by the scan
            ts = scan_grid(cuts[0], cuts[-1], self._scan_step_s)
            y = self.comp.output(ts)
            smp = (cuts[0], cuts[-1], ts, y.sum(axis=1) * self.flow.rates(ts),
                   self._true_content(ts, self._content(y, ts)))
        _, _, ts, flow, c = smp
        bad = ~((c >= q.spec_low - 1e-9) & (c <= q.spec_high + 1e-9))
        rsd = self.tablet_rsd
        if not bad.any() and rsd == 0:
            return
        piece = np.clip(np.searchsorted(cuts, ts, side="right") - 1, 0, len(cuts) - 2)
        acc = accepted[piece]
        bad &= acc
        dt = (cuts[-1] - cuts[0]) / (ts.size - 1)
        w = self.tablet.weight_kg
        if bad.any():
            kg = float(flow[bad].sum()) * dt
            self.released_oos_kg += kg
            self.released_oos_samples += int(bad.sum())
            if self.released_oos_by_cause is not None:
                self._attribute(ts[bad], flow[bad] * dt)
            if rsd == 0:
                self.released_oos_tablets += kg / w
        if rsd > 0 and acc.any():
            cc = c[acc]
            with np.errstate(invalid="ignore", divide="ignore"):
                sd = rsd * cc
                p = special.ndtr((q.spec_low - cc) / sd) + special.ndtr((cc - q.spec_high) / sd)
            p = np.where(np.isfinite(cc) & (cc > 0), p, 1.0)
            self.released_oos_tablets += float((flow[acc] * p).sum()) * dt / w

    def _attribute(self, ts: np.ndarray, kg: np.ndarray) -> None:
        """Book released out-of-spec samples (times ``ts``, masses ``kg``) by cause, a debugging
        breakdown of the truth audit (docs/twin.md): ``potency`` when the plant's mass flows
        alone put the content in spec (a lot's potency took it out); otherwise the model's cause
        at ``t`` (``refill``, ``disturbance``, ``start-up``, ``stop``) and ``.edge`` if the
        model's content leaves the acceptance limits within ``_ATTRIBUTE_S`` of ``t`` (it saw
        the excursion, its window missed this part: an error in time) or ``.unseen`` if not (an
        error in magnitude)."""
        q, soft = self.quality_spec, self.soft
        by = self.released_oos_by_cause
        c_plant = self._content(self.comp.output(ts), ts)
        for t, cp, m in zip(ts.tolist(), c_plant.tolist(), kg.tolist()):
            if q.spec_low <= cp <= q.spec_high:
                key = "potency"
            else:
                win = scan_grid(t - _ATTRIBUTE_S, t + _ATTRIBUTE_S, self._scan_step_s)
                cm = self._content(soft.output(win), win, soft.api_idx)
                seen = not bool(np.all((cm >= q.accept_low) & (cm <= q.accept_high)))
                key = f"{self._cause(t, prune=False)}.{'edge' if seen else 'unseen'}"
            by[key] = by.get(key, 0.0) + m

    def _horizon(self, now: float) -> float:
        """The latest time of the next due wake-up (:meth:`_quality_due`) as known now."""
        h = self._full_at + self.control_interval_s
        if self.running:
            h = min(h, self._unit_eta)
        if self.batch_s:
            h = min(h, self.batch.start_s + self.batch_s)
        return h

    def _project(self, now: float) -> None:
        """Schedule the next exit from spec as a wake-up at its computed time: the content predicted
        from the feed the feeders will deliver with no further command (their own dynamics: noise
        cells, refills ending, hoppers running down; :meth:`LossInWeightFeeder.projected_blocks`)
        from the last sync up to the next due wake-up (:meth:`_horizon`), scanned as :meth:`_scan`
        scans the elapsed interval (σ/10 grid, crossings refined to 1e-3 s). An excursion under way
        now was booked by the last scan (if not, the exit is now); the first one that begins later
        is the exit. Run at every due wake-up and whenever the feed changes by command (a refill
        starting, a stop, a restart: ``_reproject``), so every instant is covered by a projection
        made before it. The feeders are synced only at due wake-ups and commands, each followed by
        a projection, so the projected feed is the feed the next sync pushes (exactly, or to
        rounding in gravimetric mode) and the exit is where the next scan finds it."""
        self._exit_at = math.inf
        self._reproject = False
        h = self._horizon(now)
        if not h > now or not self.running:  # a paused line's output stands still
            return
        q = self.quality_spec
        soft = self.soft
        if soft is None:
            cuts, comp = self.engine.ahead_rows(h)

            def g(ts: np.ndarray) -> np.ndarray:
                return self._content(self.comp.output_with(ts, cuts, comp), ts)
        else:  # the model's projection: the measured flows as read at the last sync persist

            def g(ts: np.ndarray) -> np.ndarray:
                return self._content(soft.output(ts), ts, soft.api_idx)

        ts = scan_grid(now, h, self._scan_step_s)
        v = g(ts)
        if clear_of_limits(v, q.accept_low, q.accept_high):
            return
        ok = (v >= q.accept_low) & (v <= q.accept_high)  # NaN: flow too low, out of spec
        if not ok[0] and not self._oos_going_on and self._scanned < now:
            # out of spec now and not booked by the last scan: scan now (a due wake-up)
            self._exit_at = now
            return
        j = int(np.argmax(ok))  # past an excursion under way now
        if not ok[j]:
            return
        bad = np.flatnonzero(~ok[j:])
        k = j + int(bad[0]) if bad.size else ts.size - 1
        # refine only up to the first sample out of spec (and narrower excursions before it)
        for lo, hi in out_of_spec_intervals(g, float(ts[j]), float(ts[k]), q.accept_low,
                                             q.accept_high, self._scan_step_s, xtol_s=1e-3,
                                             values=v[j:k + 1], grid=ts[j:k + 1]):
            if hi > now:  # a crossing refined to now (a grazing one, by rounding) counts too
                self._exit_at = max(lo, now) + 1e-3  # the scan then sees it out of spec
                break

    def _eta(self, now: float) -> float:
        """When the next unit of accepted tablets can be complete: the output from the routed
        time on (now − lag at a due wake-up) at the nominal rate, skipping the diversion
        windows already booked, must reach what the unit still needs; it is routed lag after it
        leaves, and another lag is kept as a margin for flows below nominal (a unit goes out
        at the wake-up after it fills)."""
        left = max(self.unit_kg + self.qc_kg - self._pending_kg, 0.0)
        rate = self.rate_kg_s
        if rate <= 0.0:
            return math.inf
        t = max(self._routed, now - self.lag_s)
        for a, b, _ in self.gate.windows:  # sorted by start
            if b <= t:
                continue
            if a > t:
                if (a - t) * rate >= left:
                    break
                left -= (a - t) * rate
            t = max(t, b)
        return t + left / rate + 2.0 * self.lag_s + 1e-6

    def _true_content(self, ts: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The true API content at ``ts`` given the model's ``c``: lots with a potency other
        than 1 (``lot_potency``) carry (1 − potency) × their mass less API than the model
        (which knows only the feeders' mass flows) assumes."""
        if not self.lot_potency:
            return c
        y = self.lots.output(ts)
        tot = y.sum(axis=1)
        short = np.zeros_like(tot)
        for lot, p in self.lot_potency.items():
            i = self.engine.lot_channel(lot)
            if i is not None:
                short += (1.0 - p) * y[:, i]
        with np.errstate(invalid="ignore", divide="ignore"):
            return c - np.where(tot > 0, short / tot, 0.0) / self.api_share
