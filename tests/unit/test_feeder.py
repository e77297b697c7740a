"""Loss-in-weight feeder: refill interval and duration, exact mass balance, level events."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkfab.factory.feeder import (FeederParams, LossInWeightFeeder, feed_factor,
                                    refill_duration_s, refill_interval_s)


def test_feeder_refill_interval_and_duration():
    """Constant feed factor, no noise: (M_high − M_low)/F between refills and
    (M_high − M_low)/(R − F) for a refill, scheduled from next_event()."""
    p = FeederParams(0.02, 0.02, 0.0, m_low_kg=2.0, m_high_kg=10.0)
    F, R = 0.008, 0.05
    f = LossInWeightFeeder(p, np.random.default_rng(0), mass_kg=10.0, setpoint_kg_s=F)
    t_low, kind = f.next_event()
    assert kind == "low"
    assert t_low == pytest.approx(refill_interval_s(10.0, 2.0, F), rel=1e-12)
    assert t_low == pytest.approx(8.0 / F, rel=1e-12)
    f.start_refill(t_low, mass_kg=50.0, rate_kg_s=R, lot_id="L1")
    t_done, kind = f.next_event()
    assert kind == "refill_done"
    assert t_done - t_low == pytest.approx(refill_duration_s(10.0, 2.0, R, F), rel=1e-9)
    assert t_done - t_low == pytest.approx(8.0 / (R - F), rel=1e-9)
    f.advance(t_done)
    assert f.mode == "gravimetric" and f.mass_kg == pytest.approx(10.0, rel=1e-12)
    assert f.refill_leftover_kg == 0.0
    assert f.refilled_kg == pytest.approx(R * 8.0 / (R - F), rel=1e-9)


def test_feeder_volumetric_drift_during_refill():
    """ω frozen at refill start: F = ff(M)·ω rises with M, F/F_sp = ff(M)/ff(M_start)."""
    p = FeederParams(0.03, 0.015, 0.4, m_low_kg=1.0, m_high_kg=8.0)
    f = LossInWeightFeeder(p, np.random.default_rng(0), mass_kg=1.0, setpoint_kg_s=0.01)
    f.start_refill(0.0, 20.0, 0.06, "L2")
    t, _ = f.next_event()
    segs = f.advance(t)
    ratio = segs[-1].rate_kg_s / 0.01
    m_end = f.mass_kg  # 8 kg; the last 1 s segment averages over a slightly lower M
    assert ratio == pytest.approx(p.ff(m_end) / p.ff(1.0), rel=2e-3)
    assert ratio > 1.3
    assert feed_factor(0.0, 0.03, 0.015, 0.4) == pytest.approx(0.015)


@pytest.mark.parametrize("sd,beta", [(0.0, 0.0), (0.03, 0.5), (0.1, 2.0)])
def test_feeder_mass_balance_closes(sd, beta):
    """fed = initial + refilled − final to 1e-9 relative over many refill cycles driven by
    next_event(), and fed = Σ segment rate × duration (per lot too)."""
    p = FeederParams(0.025, 0.012, beta, 1.5, 9.0, noise_sd=sd, noise_corr=0.7,
                     noise_period_s=2.0)
    f = LossInWeightFeeder(p, np.random.default_rng(7), mass_kg=6.0, setpoint_kg_s=0.012)
    seg_mass = 0.0
    seg_lot: dict = {}
    lot = 0
    while f.t < 20_000:
        t, kind = f.next_event()
        segs = f.advance(min(t, 20_000.0))
        for s in segs:
            seg_mass += s.rate_kg_s * (s.end_s - s.start_s)
            for k, v in s.lots.items():
                seg_lot[k] = seg_lot.get(k, 0.0) + v * (s.end_s - s.start_s)
        if kind == "low" and f.t == t:
            assert f.mass_kg == pytest.approx(p.m_low_kg, rel=1e-9)
            lot += 1
            f.start_refill(t, 7.0, 0.08, f"lot{lot}")
    assert lot >= 10
    bal = f.initial_kg + f.refilled_kg - f.mass_kg
    assert abs(f.fed_kg - bal) <= 1e-9 * f.fed_kg
    assert seg_mass == pytest.approx(f.fed_kg, rel=1e-9)
    for k, v in f.fed_by_lot.items():
        assert seg_lot[k] == pytest.approx(v, rel=1e-9, abs=1e-12)
    assert sum(f.lots.values()) == pytest.approx(f.mass_kg, rel=1e-9)


def test_feeder_empties_and_starves():
    p = FeederParams(0.02, 0.02, 0.0, 1.0, 5.0)
    f = LossInWeightFeeder(p, np.random.default_rng(0), mass_kg=0.5, setpoint_kg_s=0.01)
    t, kind = f.next_event()
    assert kind == "empty" and t == pytest.approx(50.0)
    assert f.time_to_level(0.2) == pytest.approx(30.0)
    f.advance(100.0)
    assert f.mode == "starved" and f.mass_kg == 0.0 and f.fed_kg == pytest.approx(0.5)
    assert f.next_event()[0] == math.inf


def test_feeder_noise_statistics():
    """ε is AR(1) with the given sd and lag-1 correlation (±5 standard errors, 40,000 cells)."""
    p = FeederParams(0.02, 0.02, 0.0, 0.0, 1e9, noise_sd=0.05, noise_corr=0.6,
                     noise_period_s=1.0)
    f = LossInWeightFeeder(p, np.random.default_rng(3), mass_kg=1e8, setpoint_kg_s=1.0)
    segs = f.advance(40_000.0)
    eps = np.array([s.rate_kg_s for s in segs]) - 1.0
    n = eps.size
    assert n == 40_000
    assert abs(eps.std() / 0.05 - 1) < 5 * math.sqrt((1 + 0.6**2) / (1 - 0.6**2) / (2 * n))
    r1 = np.corrcoef(eps[:-1], eps[1:])[0, 1]
    assert abs(r1 - 0.6) < 5 * (1 - 0.6**2) / math.sqrt(n)


def test_refill_ends_late_in_a_long_run():
    """A 20 kg container emptied at 0.4 kg/s from t = 2,097,120.28 s (day 24, where the
    cdc-line once stalled): the cells' rounding leaves ~1e-10 kg, which pours in faster than the
    clock resolves (t + left/R == t). The refill must end there — before the fix next_event()
    looped for ever — with the whole container in the hopper and the mass balance closed."""
    p = FeederParams(0.006, 0.006, 0.0, m_low_kg=6.0, m_high_kg=100.0, noise_period_s=30.0)
    t0 = 2097120.2800487934
    f = LossInWeightFeeder(p, np.random.default_rng(0), mass_kg=6.0, setpoint_kg_s=0.01335,
                           t0=t0)
    f.start_refill(t0, 20.0, 0.4, "L")
    t_done, kind = f.next_event()
    assert kind == "refill_done" and t_done == pytest.approx(t0 + 50.0, abs=1e-6)
    f.advance(t_done)
    assert f.mode == "gravimetric" and f._refill is None
    assert f.refilled_kg == pytest.approx(20.0, rel=1e-12)
    assert abs(f.mass_balance_error_kg) < 1e-9
    assert f.next_event()[0] > t_done


def test_feed_blocks_are_the_noise_cells():
    """advance_blocks() gives the same segments as advance() on a twin feeder (same seed), and
    in gravimetric mode they are exactly the noise cells [j·P, (j+1)·P) at F_sp·(1 + ε_j);
    without noise the cells merge into one segment per call."""
    p = FeederParams(0.02, 0.01, 0.3, 1.0, 50.0, noise_sd=0.05, noise_corr=0.5,
                     noise_period_s=30.0)
    fa = LossInWeightFeeder(p, np.random.default_rng(5), mass_kg=40.0, setpoint_kg_s=0.01)
    fb = LossInWeightFeeder(p, np.random.default_rng(5), mass_kg=40.0, setpoint_kg_s=0.01)
    segs, blocks = [], []
    for t in (7.5, 100.0, 100.0, 1234.5, 2000.0):
        segs += fa.advance(t)
        blocks += fb.advance_blocks(t)
    from_blocks = [sg for b in blocks for sg in b.segments()]
    assert [(s.start_s, s.end_s, s.rate_kg_s, s.lots, s.composition) for s in segs] == [
        (s.start_s, s.end_s, s.rate_kg_s, s.lots, s.composition) for s in from_blocks]
    eps = fb._noise.get(0, 67)
    for s in from_blocks:
        j = int(s.start_s // 30.0)
        assert s.end_s <= (j + 1) * 30.0 + 1e-9  # within one cell
        assert s.rate_kg_s == pytest.approx(0.01 * eps[j], rel=1e-12)
    quiet = FeederParams(0.02, 0.01, 0.3, 1.0, 50.0, noise_period_s=30.0)
    f = LossInWeightFeeder(quiet, np.random.default_rng(5), mass_kg=40.0, setpoint_kg_s=0.01)
    (b,) = f.advance_blocks(1000.0)
    assert b.starts.tolist() == [0.0] and b.ends.tolist() == [1000.0]
    assert b.rates[0] == pytest.approx(0.01, rel=1e-12)


def _drive(small_cells: int, monkeypatch, sd: float) -> tuple[list, list]:
    """A feeder driven through random advances, refills, level events and set-point changes
    (including a stop at zero and starving), with ``SMALL_CELLS`` = ``small_cells``."""
    import darkfab.factory.feed_cells as fm
    monkeypatch.setattr(fm, "SMALL_CELLS", small_cells)
    p = FeederParams(0.025, 0.012, 0.5, 1.5, 9.0, noise_sd=sd, noise_corr=0.6,
                     noise_period_s=3.0)
    f = LossInWeightFeeder(p, np.random.default_rng(11), mass_kg=6.0, setpoint_kg_s=0.012)
    plan = np.random.default_rng(5)
    blocks, events = [], []
    lot = 0
    while f.t < 30_000:
        t_ev, kind = f.next_event()
        events.append((t_ev, kind, f.mass_kg, f.mode))
        step = float(plan.exponential(40.0))
        if plan.random() < 0.1 and f.mode == "gravimetric":  # a set-point change (or a stop)
            t = min(t_ev, f.t + step) if math.isfinite(t_ev) else f.t + step
            blocks.extend(f.advance_blocks(t))
            f.set_setpoint(f.t, float(plan.choice([0.0, 0.010, 0.013])))
            continue
        t = min(t_ev, f.t + step) if math.isfinite(t_ev) else f.t + step
        blocks.extend(f.advance_blocks(t))
        if t == t_ev and kind == "low":
            lot += 1
            f.start_refill(t, 8.0, 0.05, f"L{lot}")
        if f.mode == "starved":
            f.mass_kg, f.mode, f.lots = 5.0, "gravimetric", {"fresh": 5.0}
            f.initial_kg += 5.0
        events.append((f.t, f.mass_kg, f.fed_kg))
    return blocks, events


@pytest.mark.parametrize("sd", [0.05, 0.0])  # without noise, equal cells are merged
def test_small_advances_equal_the_array_path_bit_for_bit(monkeypatch, sd):
    """The Python-float path for advances over a few noise cells gives the same blocks (starts,
    ends, rates, lots), level times, masses and fed totals as the numpy path, bit for bit."""
    b_fast, e_fast = _drive(64, monkeypatch, sd)
    b_ref, e_ref = _drive(0, monkeypatch, sd)
    assert len(b_fast) == len(b_ref) > 100
    for x, y in zip(b_fast, b_ref):
        assert np.array_equal(x.starts, y.starts) and np.array_equal(x.ends, y.ends)
        assert np.array_equal(x.rates, y.rates)
        assert x.fractions == y.fractions and x.composition == y.composition
    assert e_fast == e_ref
    kinds = {e[1] for e in e_ref if len(e) == 4}
    assert {"low", "refill_done"} <= kinds


def _drive_on_grid(small_cells: int, monkeypatch) -> list:
    """A feeder advanced to noise-cell boundaries n·P with P = 0.7 s, where n·P/P rounds off n
    for some n (cells empty by rounding), with level look-aheads near and far, refills and
    set-point changes; ``SMALL_CELLS`` = ``small_cells``. Everything it gives, in exact form."""
    import darkfab.factory.feed_cells as fm
    monkeypatch.setattr(fm, "SMALL_CELLS", small_cells)
    P = 0.7
    p = FeederParams(0.025, 0.012, 0.5, 1.5, 9.0, noise_sd=0.05, noise_corr=0.6,
                     noise_period_s=P)
    f = LossInWeightFeeder(p, np.random.default_rng(3), mass_kg=8.0, setpoint_kg_s=0.012)
    plan = np.random.default_rng(4)
    out: list = []
    n, lot = 0, 0
    while n < 40_000:
        t_ev, kind = f.next_event()
        out.append((t_ev, kind, f.time_to_level(float(plan.uniform(0.0, 9.0)))))
        n += int(plan.integers(1, 40))
        t = min(t_ev, n * P)
        for b in f.advance_blocks(t):
            out.append((b.starts.tobytes(), b.ends.tobytes(), b.rates.tobytes(), b.fractions,
                        b.composition))
        out.append((f.t, f.mass_kg, f.fed_kg, dict(f.lots), f.current_rate_kg_s()))
        if t == t_ev and kind == "low":
            lot += 1
            f.start_refill(t, 6.0, 0.08, f"L{lot}")
        elif plan.random() < 0.05 and f.mode == "gravimetric":
            f.set_setpoint(t, float(plan.choice([0.008, 0.012, 0.016])))
    return out


def test_grid_advances_and_look_aheads_equal_the_array_path_bit_for_bit(monkeypatch):
    """Advances that end on noise-cell boundaries (empty cells by rounding) and look-aheads to
    levels near and far give the same blocks, masses, totals and level times on the
    Python-float paths as on the numpy reference, bit for bit."""
    fast = _drive_on_grid(64, monkeypatch)
    ref = _drive_on_grid(0, monkeypatch)
    assert len(fast) > 1000
    assert fast == ref


def _state(f: LossInWeightFeeder) -> tuple:
    return (f.t, f.mass_kg, f.mode, f._refill, dict(f.lots), f.fed_kg, f.refilled_kg,
            dict(f.fed_by_lot), f.composition, len(f._blocks))


def _flat(blocks) -> list[tuple[float, float, float]]:
    return [(float(a), float(b), float(r)) for blk in blocks
            for a, b, r in zip(blk.starts, blk.ends, blk.rates)]


@pytest.mark.parametrize("refill", [False, True])
def test_projected_blocks_are_the_feed_of_the_next_advance(refill):
    """projected_blocks(t) is the feed advance_blocks(t) then returns (no command between),
    across noise cells and a refill ending, and leaves the feeder unchanged (next_event too:
    both look ahead on copies, with their own lots and totals). Gravimetric throughout: the
    same cells with rates equal to rounding; otherwise the same segments exactly (the
    look-ahead runs the feeder's own code)."""
    p = FeederParams(0.025, 0.012, 0.5, 1.5, 9.0, noise_sd=0.03, noise_corr=0.6,
                     noise_period_s=30.0)
    f = LossInWeightFeeder(p, np.random.default_rng(3), mass_kg=6.0, setpoint_kg_s=0.012)
    f.advance_blocks(47.3)
    if refill:
        f.advance_state(61.0)  # feed pending since 47.3
        f.start_refill(61.0, 20.0, 0.06, "L2")
    before = _state(f)
    t1 = (f.next_event()[0] + 400.0) if refill else 323.9
    assert _state(f) == before  # the look-aheads run on copies (own lots and totals)
    proj = f.projected_blocks(t1)
    assert _state(f) == before
    real = f.advance_blocks(t1)
    if refill:
        assert _flat(proj) == _flat(real)
        assert [b.composition for b in proj] == [b.composition for b in real]
    else:
        fp, fr = _flat(proj), _flat(real)
        assert [x[:2] for x in fp] == [x[:2] for x in fr]
        assert [x[2] for x in fp] == pytest.approx([x[2] for x in fr], rel=1e-14)


def test_projected_blocks_see_the_hopper_empty():
    """A projection past the time the hopper empties: the clone's feed (then nothing), not the
    set-point feed of the fast path."""
    p = FeederParams(0.025, 0.012, 0.5, 1.5, 9.0, noise_period_s=30.0)
    f = LossInWeightFeeder(p, np.random.default_rng(3), mass_kg=0.5, setpoint_kg_s=0.01)
    proj = f.projected_blocks(200.0)
    fed = sum((b - a) * r for a, b, r in _flat(proj))
    assert fed == pytest.approx(0.5, rel=1e-12)
    assert _flat(proj)[-1][1] == pytest.approx(50.0, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_projected_blocks_leave_the_pending_feed_alone(seed):
    """A projection from mid-cell with feed pending and the hopper emptying before the end (the
    look-ahead copy's path, whose first cell may extend the last pending block in place): the
    feeder's pending blocks are unchanged and its next advance equals the projection."""
    p = FeederParams(0.025, 0.012, 0.5, 1.5, 9.0, noise_sd=0.03, noise_corr=0.6,
                     noise_period_s=30.0)
    f = LossInWeightFeeder(p, np.random.default_rng(seed), mass_kg=1.0, setpoint_kg_s=0.01)
    f.advance_state(75.0)
    pending = [(b.starts.copy(), b.ends.copy(), b.rates.copy()) for b in f._blocks]
    proj = f.projected_blocks(200.0)
    assert [(b.starts.tolist(), b.ends.tolist(), b.rates.tolist()) for b in f._blocks] == [
        (a.tolist(), b.tolist(), r.tolist()) for a, b, r in pending]
    assert _flat(proj) == _flat(f.advance_blocks(200.0))
