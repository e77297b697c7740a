"""Tidy outputs: every command writes under ``results/`` by default or where ``--out`` says
(creating missing folders), and everything it writes under ``results/`` is git-ignored."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from darkfab.scenarios.cli import main

ROOT = Path(__file__).resolve().parents[2]
MM1 = ["mm1", "--hours", "1", "--set", "scenario.warmup_s=0", "--quiet"]


def test_funnel_writes_under_results_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["funnel", "cdc-line"]) == 0
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()] == [
        Path("results/funnel/cdc-line.png")]
    assert "results/funnel/cdc-line.png" in capsys.readouterr().out


def test_out_folders_are_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "a" / "b" / "run"
    assert main(["run", *MM1, "--out", str(run)]) == 0
    png = tmp_path / "new" / "deeper" / "layout.png"
    assert main(["plot", "layout", str(run), "--out", str(png)]) == 0 and png.stat().st_size
    html = tmp_path / "other" / "r.html"
    assert main(["report", str(run), "--out", str(html)]) == 0 and html.stat().st_size
    fun = tmp_path / "f" / "g" / "funnel.png"
    assert main(["funnel", "cdc-line", "--out", str(fun)]) == 0 and fun.stat().st_size


def test_default_run_folder_is_under_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *MM1]) == 0
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.iterdir()}
    assert written == {"results"}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs a git checkout")
def test_gitignore_covers_what_commands_write():
    paths = ["results/runs/mm1/x/events.parquet", "results/experiments/e/summary.json",
             "results/compare/a-vs-b/compare.json", "results/funnel/cdc-line.png",
             "results/anything/else.txt"]
    p = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT,
                       capture_output=True, text=True)
    assert sorted(p.stdout.split()) == sorted(paths), p.stderr
    kept = subprocess.run(["git", "check-ignore", "--no-index", "results/BENCHMARKS.md",
                           "results/VALIDATION.md"], cwd=ROOT, capture_output=True, text=True)
    assert kept.stdout == ""  # the committed reports stay tracked
