"""``darkfab calibrate``: the twin learns its plant. A 2-day run of a plant whose blender and API
feeder differ from the model (cdc-line), with a tracer (square wave of the API feeder's
set-point) and load-cell sampling; the calibration recovers the plant's parameters, and the
calibrated scenario runs."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from darkfab.scenarios.cli import main

TRUE_TAU_S = 140.0  # blender: hold-up 2.1 kg at 54 kg/h (the model, cdc-line: 1.5 kg, 100 s)
TRUE_N = 5.0  # the model: 3
TRUE_FF = (0.0012, 0.0007, 0.6)  # API feeder (the model: 0.0010, 0.0006, 0.8)
FEED_FRAME_S = 0.2 / (54.0 / 3600.0)  # the press feed frame's mean (not calibrated)

PLANT = f"""
extends = "cdc-line"

[continuous_lines.cdc.blender]
holdup_ref_kg = {TRUE_TAU_S * 54.0 / 3600.0}
n_tanks = {TRUE_N}

[continuous_lines.cdc.feeders.api]
ff_max_kg_rev = {TRUE_FF[0]}
ff_min_kg_rev = {TRUE_FF[1]}
beta_per_kg = {TRUE_FF[2]}

[continuous_lines.cdc.logging]
load_cells_s = 20.0
"""


def tracer_toml(period_s: float, hours: float, size_pct: float) -> str:
    """A square wave of the recipe ratio: the API feeder at +size_pct for half a period and the
    excipient down by the same mass flow, so the line rate stays put (a change of the total would
    move the press-hopper level loop, and the line rate with it, during the experiment)."""
    exc_pct = -size_pct * 0.10 / 0.89  # cdc-line: API 10 %, excipient 89 % of the feed
    steps = []
    for k in range(1, int(hours * 3600 / (period_s / 2))):
        on = k % 2
        steps.append(f"[[continuous_lines.cdc.tracer]]\ntime_s = {k * period_s / 2}\n"
                     f"size_pct = {size_pct if on else 0.0}\n")
        steps.append(f"[[continuous_lines.cdc.tracer]]\ntime_s = {k * period_s / 2}\n"
                     f"feeder = \"excipient\"\nsize_pct = {exc_pct if on else 0.0}\n")
    return "\n".join(steps)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    d = tmp_path_factory.mktemp("calibration")
    plant = d / "plant.toml"
    plant.write_text(PLANT + tracer_toml(1200.0, 48.0, 50.0))
    run = d / "run"
    assert main(["run", str(plant), "--days", "2", "--out", str(run), "--quiet"]) == 0
    out = d / "model" / "calibrated.toml"
    assert main(["calibrate", str(run), "--extends", "cdc-line", "--out", str(out)]) == 0
    return run, out, json.loads(out.with_suffix(".json").read_text())["lines"]["cdc"]


def test_calibration_recovers_the_blender_rtd(calibrated):
    _, _, res = calibrated
    rtd = res["rtd"]
    fit = rtd["fit"]
    assert rtd["nominal"]["tau_s"] == pytest.approx(100.0)
    assert rtd["nominal"]["n"] == pytest.approx(3.0)
    assert abs(fit["tau_s"] / TRUE_TAU_S - 1) < 0.05
    assert abs(fit["n"] / TRUE_N - 1) < 0.10
    # the experiment has the power for these tolerances: they are ≥ 2.5 standard errors (over
    # seeds 2026, 1, 2, 3 the errors were 0.01 %, 0.11 %, 0.16 %, 0.08 % for τ and 0.5 %,
    # 0.2 %, 0.5 %, 1.1 % for n, within 0.4 standard errors; ratio tracer, level loop on)
    assert fit["se"]["tau_s"] < 0.02 * TRUE_TAU_S and fit["se"]["n"] < 0.04 * TRUE_N
    # the standard errors are honest: the truth within 3 of them
    assert abs(fit["tau_s"] - TRUE_TAU_S) < 3 * fit["se"]["tau_s"] + 1e-9
    assert abs(fit["n"] - TRUE_N) < 3 * fit["se"]["n"]
    assert abs(rtd["line_mean_s"] / (TRUE_TAU_S + FEED_FRAME_S) - 1) < 0.05
    assert fit["converged"] and fit["r2"] > 0.9 and rtd["tracer_steps"] > 50


def test_calibration_recovers_the_api_feed_factor(calibrated):
    _, _, res = calibrated
    f = res["feeders"]["api"]["fit"]
    m = np.linspace(1.5, 6.0, 50)  # the hopper's working range

    def ff(a, b, beta):
        return a - (a - b) * np.exp(-beta * m)

    est = ff(f["ff_max_kg_rev"], f["ff_min_kg_rev"], f["beta_per_kg"])
    assert np.max(np.abs(est / ff(*TRUE_FF) - 1)) < 0.01
    for k, true in zip(("ff_max_kg_rev", "ff_min_kg_rev", "beta_per_kg"), TRUE_FF):
        assert abs(f[k] - true) < 3.5 * f["se"][k], k
    # the model's own curve (cdc-line) is far off: the fit is not the default
    assert np.max(np.abs(ff(0.0010, 0.0006, 0.8) / ff(*TRUE_FF) - 1)) > 0.1


def test_sensor_tables_match_the_run(calibrated):
    run, _, _ = calibrated
    s = json.loads((run / "summary.json").read_text())["continuous_lines"]["cdc"]
    nir = pq.read_table(run / "nir_readings.parquet")
    values = nir["api_content"].to_numpy(zero_copy_only=False)
    assert np.isfinite(values.astype(float)).sum() == s["pat"]["samples"] - s["pat"]["dropouts"]
    t = nir["sample_s"].to_numpy()
    assert np.all(np.diff(t) > 0) and np.allclose(nir["available_s"].to_numpy() - t, 10.0)
    th = nir["flow_time_s"].to_numpy()
    # flow time runs at the line rate: 1.05 during the tracer's +50 % API steps (a 10 % share),
    # 0 while the line is held (punch jams, tablet sticking)
    dth = np.diff(th)
    assert np.all(dth >= 0) and np.all(dth <= 15.0 * 1.05 + 1e-6) and (dth == 0).any()
    cells = pq.read_table(run / "load_cells.parquet").to_pandas()
    assert set(cells["feeder"]) == {"api", "excipient", "lubricant"}
    refills = cells[(cells.event == "refill") & (cells.feeder == "api")]
    assert len(refills) == s["refills"]["api"]
    g = cells[(cells["mode"] == "gravimetric") & (cells.event == "sample") & (cells.flow_kg_s > 0)]
    # gravimetric and feeding (not held): the measured flow is the set-point × (1 + noise)
    api = g[g.feeder == "api"]
    ratio = (api.flow_kg_s / api.setpoint_kg_s).to_numpy()
    assert abs(ratio.mean() - 1) < 0.005 and 0.01 < ratio.std() < 0.03


def test_the_calibrated_scenario_runs(calibrated, tmp_path):
    _, out, _ = calibrated
    assert main(["check", str(out)]) == 0
    run2 = tmp_path / "again"
    assert main(["run", str(out), "--hours", "1", "--set", "scenario.warmup_s=0", "--out",
                 str(run2), "--quiet"]) == 0
    line = json.loads((run2 / "summary.json").read_text())["resolved_scenario"][
        "continuous_lines"]["cdc"]
    assert line["tracer"] == []
    assert abs(line["blender"]["holdup_ref_kg"] / (TRUE_TAU_S * 54 / 3600) - 1) < 0.05
    assert abs(line["blender"]["n_tanks"] / TRUE_N - 1) < 0.10
    assert line["feeders"]["api"]["ff_max_kg_rev"] == pytest.approx(TRUE_FF[0], rel=0.01)
    md = out.with_suffix(".md").read_text()
    assert "Blender RTD" in md and "95 % CI" in md


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("plain") / "run"
    assert main(["run", "cdc-line", "--hours", "2", "--set", "scenario.warmup_s=0", "--out",
                 str(run), "--quiet"]) == 0
    return run


def test_bad_input_is_one_line_and_exit_2(plain_run, tmp_path, capsys):
    assert main(["calibrate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a darkfab run folder" in err[0]
    # a run with neither a tracer nor load-cell samples: nothing to fit, and why
    assert main(["calibrate", str(plain_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to calibrate" in err[0] and "tracer" in err[0]
    assert main(["calibrate", str(plain_run), "--extends", "no-such-scenario"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["calibrate", str(plain_run), "--line", "nope"]) == 2
    assert "no continuous line 'nope'" in capsys.readouterr().err
    assert main(["calibrate", str(plain_run), "--refill-guard-s", "nan"]) == 2


def test_tracer_fields_are_validated(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "cdc-line"\n[[continuous_lines.cdc.tracer]]\ntime_s = 60\n'
                   'kind = "pulse"\nsize_pct = 20\n')
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "continuous_lines.cdc.tracer" in err and "duration_s" in err
    assert main(["check", "cdc-line", "--set",
                 'continuous_lines.cdc.tracer=[{time_s=1, size_pct=20, feeder="x"}]']) == 2
    assert "not a feeder" in capsys.readouterr().err
    assert main(["check", "cdc-line", "--set",
                 "continuous_lines.cdc.tracer=[{time_s=1, size_pct=80}]"]) == 2


def test_a_pulse_is_applied_and_recorded(tmp_path):
    run = tmp_path / "pulse"
    assert main(["run", "cdc-line", "--hours", "2", "--set", "scenario.warmup_s=0", "--set",
                 'continuous_lines.cdc.tracer=[{time_s=1800, kind="pulse", size_pct=20, '
                 'duration_s=300}]', "--set", "continuous_lines.cdc.press_hopper.level_control=false",
                 "--out", str(run), "--quiet"]) == 0  # (the level loop would trim the line rate)
    ev = pq.read_table(run / "events.parquet").to_pandas()
    tr = ev[ev.kind == "tracer"]
    assert tr.time_s.tolist() == [1800.0, 2100.0]
    assert tr.detail.str.startswith("api pulse +20 %").iloc[0]
    cells = pq.read_table(run / "load_cells.parquet").to_pandas()
    sp = cells[(cells.event == "setpoint") & (cells.feeder == "api")]
    nominal = 0.10 * 54.0 / 3600.0  # the press draws 54.003 kg/h
    assert sp.time_s.tolist() == [1800.0, 2100.0]
    assert sp.setpoint_kg_s.tolist() == pytest.approx([1.2 * nominal, nominal], rel=1e-3)
    # the other feeders' rows at the same times keep their set-points
    exc = cells[(cells.event == "setpoint") & (cells.feeder == "excipient")]
    assert exc.setpoint_kg_s.tolist() == pytest.approx([0.89 * 54.0 / 3600.0] * 2, rel=1e-3)
