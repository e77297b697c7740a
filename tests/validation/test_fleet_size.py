"""Fleet-size sweep on amr-warehouse: adding a robot never lowers throughput, and until the knee
never raises the transport lead time, beyond noise. Noise is the 99 % t-interval of the paired
difference between consecutive fleet sizes over common-random-number replications. The knee is
the first size whose extra robot no longer raises throughput (the 95 % interval of the gain
reaches zero): past it, a robot only adds traffic, and the lead time may rise a little."""

from __future__ import annotations

import textwrap

import numpy as np

from darkfab.factory.statistics import t_interval
from darkfab.scenarios.experiment import run_experiment

SIZES = [1, 2, 3, 4, 5, 6]
REPLICATIONS = 4


def test_throughput_does_not_fall_and_lead_time_does_not_rise_with_fleet_size(tmp_path):
    p = tmp_path / "sweep.toml"
    p.write_text(textwrap.dedent(f"""
        [experiment]
        name = "sweep"
        scenario = "amr-warehouse"
        replications = {REPLICATIONS}
        seed = 3
        set = ["scenario.horizon_s=86400", "scenario.warmup_s=10800"]
        kpis = ["throughput_per_h", "fleet.transport_lead_time_s.p50"]
        [[factors]]
        path = "fleet.count"
        levels = {SIZES}
        """))
    res = run_experiment(p, engine="processes", workers=2, out_dir=tmp_path / "out")
    assert res.summary["runs_failed"] == 0
    value = {(r["point"], r["replication"]): r["kpis"] for r in res.records}

    def gain(kpi: str, sign: int, i: int) -> list[float]:
        return [sign * (value[(i + 1, r)][kpi] - value[(i, r)][kpi]) for r in range(REPLICATIONS)]

    before_knee = True
    for i in range(len(SIZES) - 1):
        thr = gain("throughput_per_h", +1, i)
        gain_ci = t_interval(thr, 0.95)
        before_knee = before_knee and gain_ci.mean - gain_ci.half_width > 0
        checks = [("throughput_per_h", thr)]
        if before_knee:
            checks.append(("fleet.transport_lead_time_s.p50",
                           gain("fleet.transport_lead_time_s.p50", -1, i)))
        for kpi, diffs in checks:
            ci = t_interval(diffs, 0.99)
            # the improvement may be zero, but not significantly negative
            assert ci.high >= 0 or np.isnan(ci.half_width), (
                f"{kpi} got worse from {SIZES[i]} to {SIZES[i + 1]} robots: {diffs}")
    first = np.mean([value[(0, r)]["throughput_per_h"] for r in range(REPLICATIONS)])
    last = np.mean([value[(len(SIZES) - 1, r)]["throughput_per_h"] for r in range(REPLICATIONS)])
    assert last > 1.5 * first  # one robot is the bottleneck: the sweep is not flat throughout
