"""The shipped margin-sizing experiment (scenarios/experiments/margin-sizing.toml, docs/twin.md):
the file validates, a tiny version of it runs (1 replication, a short horizon) and its report
carries the margin-sizing plot next to the generic factor-response plots."""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path

import pytest

from darkfab.scenarios.experiment import load_experiment, run_experiment
from darkfab.scenarios.report import write_report

SHIPPED = Path(__file__).resolve().parents[2] / "scenarios" / "experiments" / "margin-sizing.toml"


def test_shipped_file_validates():
    spec = load_experiment(SHIPPED)
    paths = [f.path for f in spec.factors]
    assert "continuous_lines.cdc.quality.margin_s" in paths
    assert "continuous_lines.cdc.mismatch.scale" in paths
    assert "continuous_lines.cdc.released_out_of_spec_tablets" in spec.experiment.kpis


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The shipped experiment at 1 replication of 3 h (2 × 2 × 2 points)."""
    tmp = tmp_path_factory.mktemp("margins")
    data = tomllib.loads(SHIPPED.read_text())
    e = data["experiment"]
    text = [f"[experiment]\nname = {json.dumps(e['name'])}\n"
            f"scenario = {json.dumps(e['scenario'])}\nreplications = 1\nseed = {e['seed']}\n"
            'set = ["scenario.horizon_s=10800", "scenario.warmup_s=0"]\n'
            f"kpis = {json.dumps(e['kpis'])}\n"]
    text += [f"[[factors]]\npath = {json.dumps(f['path'])}\n"
             f"levels = {json.dumps(f['levels'][:2])}\n" for f in data["factors"]]
    path = tmp / "margin-sizing.toml"
    path.write_text("\n".join(text))
    return run_experiment(path, engine="serial", out_dir=tmp / "exp").out_dir


def test_tiny_experiment_runs_and_reports_the_margin_plot(tiny):
    s = json.loads((tiny / "summary.json").read_text())
    assert s["runs_failed"] == 0 and s["runs_ok"] == 8
    for p in s["points"]:
        acc = p["kpis"]["continuous_lines.cdc.accepted_fraction"]["mean"]
        assert 0.5 < acc <= 1.0
        assert p["kpis"]["continuous_lines.cdc.released_out_of_spec_kg"]["mean"] >= 0.0
    html = write_report(tiny).read_text()
    assert "<h2>Margin sizing</h2>" in html
    _, _, rest = html.partition('alt="margin sizing" src="data:image/png;base64,')
    assert rest, "no margin-sizing figure"
    png = base64.b64decode(rest.split('"', 1)[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
