"""The hybrid integration engine of a continuous line: the sources' exact piecewise-constant
flows pushed into the line's RTD predictors (per component and per raw-material lot), and the
feed the sources will deliver with no further command, for projections.

The sources (loss-in-weight feeders, :mod:`darkfab.factory.feeder`) are advanced exactly from
event to event; their flows per component and per raw-material lot are pushed into RTD
predictors (:mod:`darkfab.factory.rtd_predictor`) of the line's RTD (its stages in series:
blender, press feed frame), which give the output flow, API content and lot composition at any
time by exact convolution (c_out(t) = Σ_i c_i·[F(t − s_i) − F(t − e_i)]; Levenspiel 1999), in
flow time (:mod:`darkfab.factory.flow_clock`).

The engine knows its sources only through :class:`FeedSource` and its stages only through their
series RTD: a new source type implements the protocol, a new stage contributes its RTD to the
series (the builder composes it); neither edits the engine.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

import numpy as np

from darkfab.factory.flow_clock import FlowClock, FlowTimePredictor
from darkfab.factory.rtd import RTD
from darkfab.factory.rtd_predictor import RTDPredictor

__all__ = ["HybridEngine", "FeedSource"]

_NO_TIMES = np.zeros(0)


class FeedSource(Protocol):
    """What the engine needs of a source of material (a feeder station).

    ``component``: the channel its flow feeds ("api", "excipient", ...); ``setpoint_kg_s``:
    its commanded flow (the lot flows are set-point × hopper fraction); ``feeder``: the model,
    with the methods of :class:`~darkfab.factory.feeder.LossInWeightFeeder` the engine calls
    (``advance_blocks``, ``projected_blocks``, ``projected_cells``, ``current_rate_kg_s``,
    ``hopper_fractions``, ``composition``, ``lots``, ``p.noise_period_s``)."""

    component: str
    setpoint_kg_s: float
    feeder: Any


class HybridEngine:
    """Sources → flow-time RTD predictors (module docstring).

    Args:
        stations: the sources, in a fixed order.
        line_rtd: the line's RTD (its stages in series).
        clock: the line's flow clock (rate set by the line as it flows and stops).
        lookback_s: clock time (s) behind the present within which the outputs stay exact
            (scans and routing lag); the flow time that passed in it is kept, and at least
            ``lookback_s`` of flow time (a unit of output at the nominal rate).
        on_lot_released: called with a raw-material lot whose predictor channel is reused (it
            has left every hopper and the line).
        lots_from: the earliest clock time whose lot fractions must stay exact, asked at each
            push (the start of the output not yet made into a unit: its genealogy).
    """

    def __init__(self, stations: Sequence[FeedSource], line_rtd: RTD, clock: FlowClock,
                 lookback_s: float,
                 on_lot_released: Callable[[Hashable], Any] | None = None,
                 lots_from: Callable[[], float] | None = None) -> None:
        self.stations = list(stations)
        self.rtd = line_rtd
        self.flow = clock
        self.comp = FlowTimePredictor(RTDPredictor(line_rtd, t0=0.0, retain_s=lookback_s), clock,
                                      lookback_s=lookback_s)
        for c in sorted({st.component for st in self.stations}):
            self.comp.channel(c)  # fixed channel order
        self._comp_col = [self.comp.channels.index(st.component) for st in self.stations]
        self.lots = FlowTimePredictor(RTDPredictor(line_rtd, t0=0.0, retain_s=lookback_s), clock,
                                      strict=False, lookback_s=lookback_s, keep_from=lots_from)
        self._slot_of: dict[Hashable, int] = {}
        self._slot_lot: dict[int, Hashable] = {}
        self._slot_seen: dict[int, float] = {}  # slot -> flow time its lot was last fed
        self._fed_slots: list[int] = []  # the slots of the latest lot push
        self._lot_pushes: list[tuple[float, dict[int, float]]] = []  # by _push_lots
        self._lots_key: tuple[int, ...] = (-1,) * len(self.stations)  # composition per source
        self._one_cell_grid = len({st.feeder.p.noise_period_s for st in self.stations}) == 1
        self.on_lot_released = on_lot_released
        self.synced = 0.0  # the sources' feed is in the predictors up to here
        #: the control system's model (:class:`~.soft_sensor.SoftSensor`), fed the same segments
        #: at every sync; ``None``: the model is the plant (no mismatch, ideal instruments)
        self.observer: Any = None

    def channels_of(self, component: str) -> list[int]:
        """Columns of the component predictor's outputs that carry ``component``."""
        return [i for i, c in enumerate(self.comp.channels) if c == component]

    def lot_fractions(self, a: float, b: float) -> dict[Hashable, float]:
        """Mass fraction of each raw-material lot in the output leaving in [a, b] (s)."""
        return {self._slot_lot[s]: x for s, x in self.lots.lot_fractions(a, b).items()}

    def lot_channel(self, lot: Hashable) -> int | None:
        """The lot predictor's column carrying ``lot`` (``None``: not in the line now)."""
        s = self._slot_of.get(lot)
        chans = self.lots.channels
        return chans.index(s) if s is not None and s in chans else None

    def holdup_kg(self, now: float) -> float:
        """Material in the line's stages now (kg)."""
        return float(self.comp.holdup(now).sum())

    def sync(self, now: float) -> None:
        """Advance every feeder to ``now`` and push their flows into the predictors: the
        component predictor at every breakpoint of any feeder's piecewise-constant flow, the lot
        predictor whenever a hopper's lot composition changes (it carries each lot's share of
        the feeder's set-point flow, so feed noise does not enter the lot split); then the
        present flows, assumed to persist until the next sync replaces them. The feeders'
        segments arrive as arrays (:class:`~darkfab.factory.feeder.FeedBlock`); the rates at
        all breakpoints are found by binary search and pushed as one matrix."""
        stations = self.stations
        feeds = []
        simple = True  # every feeder one block
        for st in stations:
            blocks = st.feeder.advance_blocks(now)
            if not blocks:
                feeds.append(None)
                simple = False
            elif len(blocks) == 1:
                b0 = blocks[0]
                feeds.append((b0.starts, b0.ends, b0.rates, blocks, None))
            else:
                simple = False
                feeds.append((np.concatenate([b.starts for b in blocks]),
                              np.concatenate([b.ends for b in blocks]),
                              np.concatenate([b.rates for b in blocks]), blocks,
                              np.cumsum([b.starts.size for b in blocks])))
        # the common case: every feeder gravimetric on the same noise-cell grid up to now
        # (compared as Python lists: a few elements, cheaper than numpy comparisons)
        f0 = feeds[0]
        same = False
        if simple:
            s0, e0 = f0[0].tolist(), f0[1].tolist()
            same = e0[-1] == now and s0[1:] == e0[:-1] and all(
                f[0].tolist() == s0 and f[1].tolist() == e0 for f in feeds[1:])
        if same:
            cuts = f0[0]  # every start is a cut, and no end before now that is not a start
        else:
            live = [f for f in feeds if f is not None]
            if live:
                cuts = np.unique(np.concatenate([x for f in live for x in f[:2]]))
                cuts = cuts[cuts < now]
            else:
                cuts = _NO_TIMES
        # the present flows (noise cell at now), assumed to persist until the next sync
        comp_now = np.zeros(len(self.comp.channels))
        key = [-1] * len(stations)
        rates_now = [0.0] * len(stations)
        for k, st in enumerate(stations):
            f = st.feeder
            r = f.current_rate_kg_s()
            if r <= 0.0:
                continue
            rates_now[k] = r
            comp_now[self._comp_col[k]] += r
            key[k] = f.composition
        if same and all(min(f[2].tolist()) > 0.0 for f in feeds):
            # every feeder feeds from one hopper composition at every cut: the lot predictor
            # changes at most at the first cut
            comp = np.zeros((cuts.size + 1, len(self.comp.channels)))
            comp[-1] = comp_now
            for k, f in enumerate(feeds):
                comp[:-1, self._comp_col[k]] += f[2]
            self.comp.push_many(np.append(cuts, now), comp)
            key0 = tuple(f[3][0].composition for f in feeds)
            if key0 != self._lots_key:
                self._push_lots(float(cuts[0]), {
                    (k, lot): x / f[2][0] for k, f in enumerate(feeds)
                    for lot, x in f[3][0].lots_at(0).items()})
            self._lots_key = key0
        elif cuts.size:
            self._sync_cuts(now, feeds, cuts, comp_now, same)
        else:
            self.comp.push_many([now], comp_now[None, :])
        key_t = tuple(key)
        if key_t != self._lots_key:
            self._lots_key = key_t
            self._push_lots(now, {(k, lot): x for k in range(len(stations)) if key[k] >= 0
                                  for lot, x in stations[k].feeder.hopper_fractions().items()})
        if self._lot_pushes:
            self._flush_lots()
        self.synced = now
        keep = min(self.comp.valid_from_theta, self.lots.valid_from_theta)
        if self.observer is not None:
            self.observer.push(now, feeds, rates_now)
            keep = min(keep, self.observer.keep_theta())
        self.flow.prune(keep)

    def _sync_cuts(self, now: float, feeds: list, cuts: np.ndarray, comp_now: np.ndarray,
                   same: bool) -> None:
        """:meth:`sync` at the breakpoints ``cuts`` (< now) when the feeders' segments do not
        share one grid or one hopper composition (a refill: a new composition every noise cell):
        each feeder's rate and composition at every cut by binary search over its segments,
        the component flows pushed as one matrix, lot flows wherever a composition changes.
        Python lists and floats (a handful of cuts and segments per sync): the same additions
        in the same order as an array form, so the same values."""
        cl = cuts.tolist()
        m = len(cl)
        nst = len(self.stations)
        comp = [[0.0] * len(comp_now) for _ in range(m)]
        keys = [[-1] * nst for _ in range(m)]
        rows: list[list[int] | None] = []
        offl: list[list[int] | None] = []
        for k, f in enumerate(feeds):
            if f is None:
                rows.append(None)
                offl.append(None)
                continue
            starts, ends, rates, blocks, offs = f
            col = self._comp_col[k]
            rl = rates.tolist()
            ol = None if offs is None else offs.tolist()
            offl.append(ol)
            c0 = blocks[0].composition
            comps = [b.composition for b in blocks]
            nb = len(blocks)
            if same:  # segment j of every feeder starts at cut j (one block each)
                for j in range(m):
                    r = rl[j]
                    comp[j][col] += r
                    if r > 0:
                        keys[j][k] = c0
                rows.append(None)
                continue
            sl, el = starts.tolist(), ends.tolist()
            n = len(sl)
            ics = []
            for j, c in enumerate(cl):
                i = bisect.bisect_right(el, c)  # the first segment ending after c
                ic = i if i < n - 1 else n - 1
                cov = i < n and sl[ic] <= c
                r = rl[ic] if cov else 0.0
                comp[j][col] += r
                if cov and r > 0:
                    keys[j][k] = c0 if ol is None else comps[
                        min(bisect.bisect_right(ol, ic), nb - 1)]
                ics.append(ic)
            rows.append(ics)
        comp.append(comp_now.tolist())
        self.comp.push_many(np.append(cuts, now), np.array(comp))
        prev = list(self._lots_key)
        for j in range(m):
            kj = keys[j]
            if kj == prev:
                continue
            prev = kj
            fractions: dict[tuple[int, Hashable], float] = {}
            for k, f in enumerate(feeds):
                if kj[k] < 0:
                    continue
                blocks, ol = f[3], offl[k]
                i = j if rows[k] is None else rows[k][j]
                bi = 0 if ol is None else bisect.bisect_right(ol, i)
                blk = blocks[bi]
                ii = i - (0 if bi == 0 else ol[bi - 1])
                rate = blk.rates[ii]
                for lot, x in blk.lots_at(ii).items():
                    fractions[(k, lot)] = x / rate
            self._push_lots(cl[j], fractions)
        self._lots_key = tuple(keys[-1])

    def _push_lots(self, t: float, fractions: dict[tuple[int, Hashable], float]) -> None:
        """Lot flows = set-point flow × hopper fraction (called when they change), collected
        during a sync and pushed by :meth:`_flush_lots` in one call."""
        th = self.flow.theta(t)  # in flow time: material stays in a paused line
        for s in self._fed_slots:  # the lots of the segment this push ends were fed until th
            self._slot_seen[s] = th
        flows: dict[Hashable, float] = {}
        for (k, lot), x in fractions.items():
            slot = self._slot(lot, th, t)
            flows[slot] = flows.get(slot, 0.0) + self.stations[k].setpoint_kg_s * x
        self._fed_slots = list(flows)
        self._lot_pushes.append((t, flows))

    def _flush_lots(self) -> None:
        """Push the lot flows collected by :meth:`_push_lots` (a refill changes the hopper
        composition at every noise cell): one ``push_many`` gives the predictor the same
        segments as one ``push`` each, so the same outputs."""
        pushes = self._lot_pushes
        if len(pushes) == 1:
            self.lots.push(*pushes[0])
        elif pushes:
            self.lots.push_many([t for t, _ in pushes], [f for _, f in pushes])
        pushes.clear()

    def _slot(self, lot: Hashable, now: float, t: float) -> int:
        """Predictor channel for ``lot`` fed at flow time ``now`` (clock time ``t``): channels
        are reused once their lot has left every hopper and the line (bounded cost over a year
        of refills)."""
        s = self._slot_of.get(lot)
        if s is None:
            live = {lt for st in self.stations for lt in st.feeder.lots}
            horizon = now - self.rtd.tail_s - self.lots.retain_at(t)
            for slot, old in sorted(self._slot_lot.items()):
                if old not in live and self._slot_seen.get(slot, 0.0) < horizon:
                    del self._slot_of[old]
                    if self.on_lot_released is not None:  # it has left the line
                        self.on_lot_released(old)
                    s = slot
                    break
            if s is None:
                s = len(self._slot_lot)
            self._slot_of[lot], self._slot_lot[s] = s, lot
        self._slot_seen[s] = now
        return s

    def ahead_rows(self, h: float) -> tuple[np.ndarray, np.ndarray]:
        """The component flows from the last sync up to ``h`` that the feeders will deliver with
        no further command (:meth:`LossInWeightFeeder.projected_blocks`), as rows for
        :meth:`RTDPredictor.output_with`: breakpoints and flows per channel."""
        t0 = self.synced
        if self._one_cell_grid:  # the usual case: every feeder gravimetric since the sync
            cells = []
            for st in self.stations:
                c = st.feeder.projected_cells(h)
                if c is None or c[0][0] != t0:
                    break
                cells.append(c)
            else:  # every feeder's edges: the same cell period (frozen parameters), start, end
                edges = cells[0][0]
                comp = np.zeros((edges.size - 1, len(self.comp.channels)))
                for k, c in enumerate(cells):
                    comp[:, self._comp_col[k]] += c[1]
                return edges[:-1], comp
        cuts_l: list[np.ndarray] = [np.array([t0])]
        rates = []
        for st in self.stations:
            blocks = st.feeder.projected_blocks(h)
            if blocks:
                a = np.concatenate([blk.starts for blk in blocks])
                b = np.concatenate([blk.ends for blk in blocks])
                rates.append((a, b, np.concatenate([blk.rates for blk in blocks])))
                cuts_l += [a, b]
            else:
                rates.append(None)
        # every feeder's rate at every breakpoint (a refill, feed pending since the sync)
        cuts = np.unique(np.concatenate(cuts_l))
        cuts = cuts[(cuts >= t0) & (cuts < h)]
        comp = np.zeros((cuts.size, len(self.comp.channels)))
        for k, r in enumerate(rates):
            if r is None:
                continue
            a, b, x = r
            i = np.minimum(np.searchsorted(b, cuts, side="right"), a.size - 1)
            comp[:, self._comp_col[k]] += np.where(a[i] <= cuts, x[i], 0.0) * (b[i] > cuts)
        return cuts, comp
