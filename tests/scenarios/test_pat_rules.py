"""NIR alarm rules on the default plant: a 2-of-3 rule raises fewer false alarms than the
single-reading rule on the same sample path (common random numbers), and the confusion matrix
accounts for every readable reading."""

from __future__ import annotations

from darkfab.scenarios import load_scenario, run_scenario


def _run(tmp_path, rule: str):
    s = load_scenario("cdc-line", ["scenario.warmup_s=0", "scenario.horizon_s=172800",
                                   f"continuous_lines.cdc.pat.alarm_rule={rule}",
                                   "continuous_lines.cdc.pat.alarm_k=2",
                                   "continuous_lines.cdc.pat.alarm_n=3"])
    return run_scenario(s, out_dir=tmp_path / rule)


def test_k_of_n_cuts_false_alarms(tmp_path):
    single, k_of_n = _run(tmp_path, "single"), _run(tmp_path, "k_of_n")
    cs = single.summary["continuous_lines"]["cdc"]["pat"]
    ck = k_of_n.summary["continuous_lines"]["cdc"]["pat"]
    for pat in (cs, ck):
        c = pat["confusion"]
        # every readable reading got a verdict
        assert (c["readings_tp"] + c["readings_fp"] + c["readings_fn"] + c["readings_tn"]
                == pat["samples"] - pat["dropouts"])
        assert c["true_alarms"] + c["false_alarms"] >= pat["alarms"]
    assert cs["confusion"]["false_alarms"] > 10  # the single rule's weakness near the limits
    assert ck["confusion"]["false_alarms"] < cs["confusion"]["false_alarms"] / 2
    assert ck["alarm_rule"] == {"rule": "k_of_n", "k": 2, "n": 3}
