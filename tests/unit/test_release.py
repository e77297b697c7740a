"""Release decision of a batch (darkfab.agents.line.release) on hand-made evidence: the rules
in order, the reservoir's bound and uniformity, the alarms of the batch window."""

from __future__ import annotations

import numpy as np
import pytest

from darkfab.agents.line.release import BatchRelease, ReleaseRules
from darkfab.factory.alarms import AlarmSystem


def _release(rules=ReleaseRules(), alarms=None, sink=None, seed=1):
    return BatchRelease("cdc", "tablet", rules, np.random.default_rng(seed), alarms, sink)


def _batch(accepted=100.0):
    return {"batch": "b1", "start_s": 0.0, "accepted_kg": accepted, "qc_kg": 0.0, "units": 3}


def _contents(mean, sd, n=2000, seed=2):
    return mean + sd * np.random.default_rng(seed).standard_normal(n)


def test_reservoir_is_bounded_and_uniform():
    r = _release(ReleaseRules(sample_size=400))
    r.add_contents(np.arange(300.0))
    assert np.array_equal(r.sample(), np.arange(300.0))  # fewer than the size: all, in order
    r.add_contents(np.arange(300.0, 20_000.0))
    s = r.sample()
    assert s.size == 400 and len(set(s)) == 400 and r.seen == 20_000
    # a uniform sample of 0..19999: mean 9999.5, sd 5773.5; the mean of 400 within 4 s.e.
    assert abs(s.mean() - 9999.5) < 4 * 5773.5 / 20.0
    assert (s >= 10_000).sum() == pytest.approx(200, abs=4 * 10)  # half from each half


def test_released_rejected_and_investigation():
    ok = _release()
    ok.add_contents(_contents(100.0, 1.0))
    out = ok.close(3600.0, _batch(), {"pat": 1.0})  # 1 kg of 101: under 5 %
    assert out["decision"] == "released" and out["cu"]["passed"] and out["decision_reasons"] == []
    heavy = _release()  # tablets at 120 %: AV = 18.5 + 2.23·s > 15
    heavy.add_contents(_contents(120.0, 1.2))
    out = heavy.close(3600.0, _batch(), {})
    assert out["decision"] == "rejected" and not out["cu"]["passed"]
    assert out["cu"]["acceptance_value"] == pytest.approx(
        out["cu"]["mean_pct"] - 101.5 + 2.23 * out["cu"]["sd_pct"])
    diverted = _release()
    diverted.add_contents(_contents(100.0, 1.0))
    out = diverted.close(3600.0, _batch(90.0), {"pat": 10.0})  # 10 of 100 kg made: 10 %
    assert out["decision"] == "investigation" and "diverted 10.00 %" in out["decision_reasons"][0]
    few = _release()
    few.add_contents(_contents(100.0, 1.0, n=50))  # 50 tablets: 2.9.47 needs n >= 100
    out = few.close(3600.0, _batch(), {})
    assert out["decision"] == "investigation" and out["cu"] is None
    # n = 200 is outside the sourced rows of Table 2.9.47.-1: not evaluable either
    mid = _release()
    mid.add_contents(_contents(100.0, 1.0, n=200))
    assert "no sourced row for n = 200" in mid.close(3600.0, _batch(), {})["decision_reasons"][0]


def test_diversion_counts_only_the_batch_window():
    r = _release()
    r.add_contents(_contents(100.0, 1.0))
    r.close(3600.0, _batch(), {"pat": 50.0})  # batch 1 diverted 50 kg
    r.add_contents(_contents(100.0, 1.0))
    out = r.close(7200.0, _batch(), {"pat": 51.0})  # batch 2: 1 kg
    assert out["decision"] == "released"


def test_alarms_of_the_window_and_active_at_start():
    alarms = AlarmSystem()
    records = []
    r = _release(alarms=alarms, sink=lambda rec: records.append(rec) or "h")
    alarms.raise_alarm(10.0, "cdc.pat", "api_content_oos", "NIR", priority="critical")
    alarms.raise_alarm(20.0, "other", "jam", priority="critical")  # not this line's
    r.add_contents(_contents(100.0, 1.0))
    out = r.close(3600.0, _batch(), {})
    assert out["decision"] == "investigation" and out["record_sha256"] == "h"
    assert records[0]["alarms"]["by_priority"] == {"critical": 1}
    # still active when batch 2 starts: part of its window too
    r.add_contents(_contents(100.0, 1.0))
    alarms.clear(7100.0, "cdc.pat", "api_content_oos")
    out = r.close(7200.0, _batch(), {})
    assert out["decision"] == "investigation"
    assert records[1]["alarms"]["listed"][0]["active_at_start"] is True
    r.add_contents(_contents(100.0, 1.0))
    assert r.close(10800.0, _batch(), {})["decision"] == "released"
    rules = ReleaseRules(investigate_alarm_priorities=())
    quiet = _release(rules, alarms=alarms)
    alarms.raise_alarm(11000.0, "cdc", "predicted_oos", priority="critical")
    quiet.add_contents(_contents(100.0, 1.0))
    assert quiet.close(14400.0, _batch(), {})["decision"] == "released"
