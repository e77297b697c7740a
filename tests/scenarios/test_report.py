"""HTML reports (:func:`darkfab.scenarios.report.write_report`) for a real run folder and a real
experiment folder: well-formed HTML, embedded PNG figures, KPI tables, nothing fetched online."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkfab.factory.recorder import STATES_SCHEMA
from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.experiment import run_experiment
from darkfab.scenarios.report import (gantt_window, lane_usage, read_states_window,
                                      write_report)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
RUN_FIGURES = 4          # throughput/WIP, state breakdown, Gantt, layout
EXPERIMENT = """\
[experiment]
name = "t"
scenario = "mm1"
replications = 3
set = ["scenario.horizon_s=2000", "scenario.warmup_s=100"]
[[factors]]
path = "equipment.server.process_time.mean_s"
levels = [0.5, 0.8]
"""
EXPERIMENT_2F = """\
[experiment]
name = "t2"
scenario = "mm1"
replications = 2
set = ["scenario.horizon_s=1000", "scenario.warmup_s=100"]
[[factors]]
path = "buffers.queue.capacity_units"
levels = [5, 20]
[[factors]]
path = "equipment.server.process_time"
levels = [{ dist = "exponential", mean_s = 0.8 }, { dist = "gamma", mean_s = 0.8, cv = 0.5 }]
"""


class Page(HTMLParser):
    """Collects tags, image sources, table cells and text; checks that elements nest."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.imgs: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        if tag == "title":
            self._in_title = True
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title += data


def parse(path: Path) -> tuple[Page, str]:
    raw = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(raw)
    page.close()
    assert not page.errors, page.errors[:5]
    assert not page.stack, f"unclosed elements: {page.stack}"
    assert raw.startswith("<!DOCTYPE html>")
    for tag in ("html", "head", "body", "title", "style", "h1", "table"):
        assert tag in page.tags, tag
    # offline: no scripts, no external stylesheets or fonts, no URLs at all
    assert "script" not in page.tags and "link" not in page.tags
    assert "http://" not in raw and "https://" not in raw
    return page, raw


def check_pngs(page: Page, n: int) -> None:
    assert len(page.imgs) == n
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
    png = base64.b64decode(page.imgs[0].split(",", 1)[1], validate=True)
    assert png[:8] == PNG_SIGNATURE
    assert len(png) > 5_000


def table_with(page: Page, header: str) -> list[list[str]]:
    for t in page.tables:
        if t and header in t[0]:
            return t
    raise AssertionError(f"no table with a {header!r} column")


# --- fixtures: one real run and real experiments, shared by the module ---------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    res = run_scenario(load_scenario("packaging-line", ["scenario.horizon_s=86400",
                                                        "scenario.warmup_s=3600"]),
                       out_dir=tmp / "run")
    return res.out_dir


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report-exp")
    path = tmp / "t.toml"
    path.write_text(EXPERIMENT)
    return run_experiment(path, engine="serial", out_dir=tmp / "exp").out_dir


def copy_run(run_dir: Path, dest: Path, **changes) -> Path:
    """A copy of the run folder (without events) with ``summary.json`` keys changed."""
    dest.mkdir()
    for f in run_dir.iterdir():
        if f.name not in ("events.parquet", "report.html"):
            shutil.copy(f, dest / f.name)
    s = json.loads((dest / "summary.json").read_text())
    s.update(changes)
    (dest / "summary.json").write_text(json.dumps(s))
    return dest


# --- run report ----------------------------------------------------------------------------
def test_run_report(run_dir):
    out = write_report(run_dir)
    assert out == run_dir / "report.html" and out.is_file()
    page, raw = parse(out)
    check_pngs(page, RUN_FIGURES)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "packaging-line" in page.title
    text = " ".join(page.text)
    assert summary["run_id"] in text and "seed 2026" in text and "replication 0" in text

    plant = table_with(page, "summary key")
    keys = [row[3] for row in plant[1:]]
    for k in ("throughput_per_h", "units_completed", "units_scrapped", "wip_mean",
              "lead_time_s.mean", "lead_time_s.p50", "lead_time_s.p95"):
        assert k in keys
    assert plant[1 + keys.index("units_completed")][1] == f"{summary['units_completed']:,}"

    eq = table_with(page, "OEE")
    assert eq[0][:3] == ["rank", "equipment", "utilization"]
    for col in ("availability", "performance", "quality", "starved", "blocked", "down", "faults"):
        assert col in eq[0]
    names = [row[1].replace(" (bottleneck)", "") for row in eq[1:]]
    assert names == summary["bottleneck_ranking"]  # bottleneck first
    assert set(names) == {"blister_former", "cartoner", "case_packer"}
    faults = [row[eq[0].index("faults")] for row in eq[1:]]
    assert faults == [str(summary["equipment"][n]["faults"]) for n in names]
    # the state breakdown table lists the states with time in them
    states = table_with(page, "Execute")
    assert [row[0] for row in states[1:]] == names
    assert "lane usage" not in raw  # no lanes in the summary: plain links


def test_run_report_out_path_partial_and_ranking(run_dir, tmp_path):
    ranking = ["case_packer", "blister_former", "cartoner"]
    # bottlenecks=None: a summary written before the ranking across machines and transport
    part = copy_run(run_dir, tmp_path / "partial", partial=True,
                    partial_reason="interrupted <Ctrl-C>", bottleneck_ranking=ranking,
                    bottlenecks=None)
    out = write_report(part, tmp_path / "deep" / "r.html")
    assert out == tmp_path / "deep" / "r.html" and out.is_file()
    page, raw = parse(out)
    assert "Partial run" in raw and "interrupted &lt;Ctrl-C&gt;" in raw
    check_pngs(page, RUN_FIGURES)
    eq = table_with(page, "OEE")
    assert [row[1] for row in eq[1:]] == ["case_packer (bottleneck)", "blister_former",
                                          "cartoner"]


def test_run_report_without_optional_tables(run_dir, tmp_path):
    bare = copy_run(run_dir, tmp_path / "bare")
    (bare / "timeseries.parquet").unlink()
    (bare / "states.parquet").unlink()
    page, raw = parse(write_report(bare))
    check_pngs(page, RUN_FIGURES - 2)
    assert "No timeseries.parquet" in raw and "No states.parquet" in raw


def test_lanes_colour_the_layout(run_dir, tmp_path):
    lanes = [{"a": "blister", "b": "cartoner", "trips": 400},
             {"a": "cartoner", "b": "blister", "trips": 50},
             {"a": "cartoner", "b": "reject_bin", "trips": 17}]
    d = copy_run(run_dir, tmp_path / "lanes", lanes=lanes)
    s = json.loads((d / "summary.json").read_text())
    assert lane_usage(s) == {("blister", "cartoner"): 400.0, ("cartoner", "blister"): 50.0,
                             ("cartoner", "reject_bin"): 17.0}
    page, raw = parse(write_report(d))
    check_pngs(page, RUN_FIGURES)
    assert "lane usage" in raw
    # the mapping form and unknown shapes
    assert lane_usage({"lanes": {"a->b": 3, "b--c": {"usage": 2.5}, "bad": 1}}) == {
        ("a", "b"): 3.0, ("b", "c"): 2.5}
    assert lane_usage({}) is None and lane_usage({"lanes": [{"x": 1}]}) is None


def test_gantt_window():
    h8 = 8 * 3600.0
    assert gantt_window(3600.0, 86400.0) == (3600.0, 3600.0 + h8)
    assert gantt_window(3600.0, 7200.0) == (0.0, 7200.0)          # run shorter than 8 h
    assert gantt_window(5 * 3600.0, 10 * 3600.0) == (2 * 3600.0, 10 * 3600.0)


def test_read_states_window_filters_and_clips(tmp_path):
    path = tmp_path / "states.parquet"
    w = pq.ParquetWriter(path, STATES_SCHEMA, write_statistics=True)
    for g in range(4):  # four row groups of 100 one-second intervals each
        st = np.arange(g * 100, (g + 1) * 100, dtype=float)
        n = len(st)
        w.write_table(pa.Table.from_arrays(
            [pa.array(["r"] * n), pa.array(np.zeros(n, np.int32)),
             pa.array(["m1", "m2"] * (n // 2)), pa.array(["Execute"] * n), pa.array(st),
             pa.array(st + 1.0), pa.array(np.ones(n))], schema=STATES_SCHEMA))
    w.close()
    d = read_states_window(path, 150.5, 160.5)
    assert list(d["start_s"]) == [150.5] + [float(t) for t in range(151, 161)]
    assert d["end_s"][-1] == 160.5 and d["end_s"][0] == 151.0
    assert set(d["entity"]) == {"m1", "m2"} and set(d["state"]) == {"Execute"}


# --- experiment report ----------------------------------------------------------------------
def test_experiment_report(exp_dir):
    out = write_report(exp_dir)
    assert out == exp_dir / "report.html"
    page, raw = parse(out)
    check_pngs(page, 1)  # one factor → one figure (a panel per KPI)
    summary = json.loads((exp_dir / "summary.json").read_text())
    text = " ".join(page.text)
    assert "experiment report — t" in page.title
    assert "serial" in text and "6 ok, 0 failed" in text

    points = table_with(page, "runs ok")
    assert points[0][:3] == ["point", "equipment.server.process_time.mean_s", "runs ok"]
    assert [r[1] for r in points[1:]] == ["0.5", "0.8"]
    for k in summary["kpis"]:
        assert k in points[0]
    tp = points[1][points[0].index("throughput_per_h")]
    assert re.fullmatch(r"[\d,.]+ ± [\d,.]+", tp), tp

    comp = table_with(page, "mean difference")
    assert comp[0] == ["point", "factors", "baseline", "KPI", "pairs", "mean difference",
                       "half-width", "interval", "significant"]
    rows = pq.read_table(exp_dir / "comparisons.parquet").to_pylist()
    assert len(comp) - 1 == len(rows)
    assert [r[3] for r in comp[1:]] == [r["kpi"] for r in rows]
    assert [r[8] for r in comp[1:]] == ["yes" if r["significant"] else "no" for r in rows]


def test_experiment_report_two_factors_and_failures(exp_dir, tmp_path):
    path = tmp_path / "t2.toml"
    path.write_text(EXPERIMENT_2F)
    d = run_experiment(path, engine="serial", out_dir=tmp_path / "exp2").out_dir
    s = json.loads((d / "summary.json").read_text())
    s["runs_failed"] = 1
    s["failed_runs"] = [{"point": 1, "replication": 2, "error": "RuntimeError: <boom>",
                         "out_dir": "runs/p001-r002"}]
    (d / "summary.json").write_text(json.dumps(s))
    page, raw = parse(write_report(d))
    check_pngs(page, 2)  # one figure per factor
    failed = table_with(page, "error")
    assert failed[1][:3] == ["1", "2", "RuntimeError: <boom>"]
    points = table_with(page, "runs ok")
    assert '{"dist": "gamma", "mean_s": 0.8, "cv": 0.5}' in [r[2] for r in points[1:]]


# --- not a results folder -------------------------------------------------------------------
def test_not_a_results_folder(tmp_path, run_dir):
    with pytest.raises(ValueError, match="summary.json") as e:
        write_report(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(ValueError, match="not a folder"):
        write_report(tmp_path / "missing")
    (tmp_path / "summary.json").write_text(json.dumps({"scenario": "x"}))
    with pytest.raises(ValueError, match="run_id.*experiment.*points"):
        write_report(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_plot_layout_writes_a_png_with_lane_usage(tmp_path):
    import subprocess
    import sys

    from darkfab.scenarios import load_scenario, run_scenario

    res = run_scenario(load_scenario("amr-warehouse", ["scenario.horizon_s=7200",
                                                       "scenario.warmup_s=600"]),
                       out_dir=tmp_path / "run", check_invariants=True)
    assert any(lane["usage"] > 0 for lane in res.summary["lanes"])
    out = subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", "plot", "layout",
                          str(res.out_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    png = (res.out_dir / "layout.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    bad = subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", "plot", "layout",
                          str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
