"""Confidence-interval coverage: over many small M/M/1 experiments, the share of 95 % t-intervals
on the mean time in system that contain the theoretical W = 1/(μ − λ) is near 95 %, within a
binomial acceptance band (two-sided 99.9 %) for the number of experiments."""

from __future__ import annotations

import textwrap

from scipy import stats

from darkfab.scenarios.experiment import run_experiment

N_EXPERIMENTS = 100
REPLICATIONS = 5
LAMBDA, MU = 0.5, 1.0  # ρ = 0.5: relaxation time ~10 s, so a 200 s warm-up leaves no bias
W_THEORY = 1.0 / (MU - LAMBDA)


def test_t_interval_coverage_is_nominal(tmp_path):
    hits = 0
    for k in range(N_EXPERIMENTS):
        p = tmp_path / f"e{k}.toml"
        p.write_text(textwrap.dedent(f"""
            [experiment]
            name = "cov{k}"
            scenario = "mm1"
            replications = {REPLICATIONS}
            seed = {1000 + k}
            confidence = 0.95
            kpis = ["lead_time_s.mean"]
            set = ["scenario.horizon_s=2200", "scenario.warmup_s=200",
                   "equipment.server.process_time.mean_s={1 / MU}",
                   "sources.arrivals.interarrival.mean_s={1 / LAMBDA}"]
            """))
        res = run_experiment(p, engine="serial", out_dir=tmp_path / f"o{k}")
        ci = res.summary["points"][0]["kpis"]["lead_time_s.mean"]
        assert ci["n"] == REPLICATIONS
        hits += ci["low"] <= W_THEORY <= ci["high"]
    lo = stats.binom.ppf(0.0005, N_EXPERIMENTS, 0.95)
    hi = stats.binom.ppf(0.9995, N_EXPERIMENTS, 0.95)
    assert lo <= hits <= hi, f"coverage {hits}/{N_EXPERIMENTS} outside [{lo}, {hi}]"
