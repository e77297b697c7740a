"""Terminal output (:mod:`darkfab.scenarios.terminal`): the progress bars' rate and time
remaining against a hand computation on a fake clock, the KPI tables drawn by rich on a
terminal, and the plain text printed anywhere else, byte for byte as before rich was used."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from darkfab.scenarios import cli_experiment, cli_run, terminal
from darkfab.scenarios.compare import format_compare
from darkfab.scenarios.runner import fmt

DAY = 86_400.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def tty_console(buf: io.StringIO) -> Console:
    return Console(file=buf, force_terminal=True, width=140, color_system=None)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def last_frame(text: str) -> str:
    """The bar as last drawn (rich redraws a line after a carriage return)."""
    return ANSI.sub("", text).split("\r")[-1].strip()


# --- progress ------------------------------------------------------------------------------
def test_run_bar_rate_and_eta_on_a_fake_clock():
    """1 simulated day every 2 wall seconds: 0.5 simulated days per wall second; at day 5 of
    10 the 5 remaining days take 10 s."""
    buf, clock = io.StringIO(), Clock()
    with terminal.SimTimeProgress(10 * DAY, console=tty_console(buf), get_time=clock) as bar:
        for day in range(1, 6):
            clock.t = 2.0 * day
            bar.update(day * DAY)
        assert bar.time_remaining_s == pytest.approx(5 / 0.5)
    line = last_frame(buf.getvalue())
    assert "50.0%" in line and "5.00 / 10.00 simulated days" in line
    assert "0.5 sim d/s" in line
    assert "ETA 0:00:10" in line


def test_run_bar_rate_follows_a_slowdown():
    """The rate is over rich's 30 s window of progress samples, not the average since the
    start: 1 day/s for 10 s, then one day every 4 s for 40 s. At 50 s only the samples newer
    than 20 s remain (22, 26, ..., 50 s): 7 days after the first in 28 s = 0.25 day/s, and
    the 80 days left take 320 s."""
    buf, clock = io.StringIO(), Clock()
    with terminal.SimTimeProgress(100 * DAY, console=tty_console(buf), get_time=clock) as bar:
        day = 0
        for _ in range(10):
            clock.t += 1.0
            day += 1
            bar.update(day * DAY)
        for _ in range(10):
            clock.t += 4.0
            day += 1
            bar.update(day * DAY)
        assert bar.time_remaining_s == pytest.approx(80 / 0.25)
    line = last_frame(buf.getvalue())
    assert "0.25 sim d/s" in line and "ETA 0:05:20" in line


def test_runs_bar_counts_runs_rate_and_eta():
    """4 runs of 2 simulated days; two finish at 20 s and 30 s after the start: 4 simulated days
    in 30 s of wall time, 15 s per run, so the 2 runs left take 30 s."""
    buf, clock = io.StringIO(), Clock()
    with terminal.RunsProgress(console=tty_console(buf), get_time=clock) as bar:
        bar.add(4)
        assert bar.time_remaining_s is None
        clock.t = 20.0
        bar.step(2 * DAY)
        clock.t = 30.0
        bar.step(2 * DAY)
        assert bar.time_remaining_s == pytest.approx(30.0)
    line = last_frame(buf.getvalue())
    assert "2/4" in line
    assert f"{4 / 30:.3g} sim d/s" in line
    assert "ETA 0:00:30" in line


def test_runs_bar_failed_run_adds_no_simulated_time():
    buf, clock = io.StringIO(), Clock()
    with terminal.RunsProgress(console=tty_console(buf), get_time=clock) as bar:
        bar.add(2)
        clock.t = 10.0
        bar.step(None)
        bar.add(1)  # a sequential experiment plans more runs
    assert "1/3" in last_frame(buf.getvalue()) and "- sim d/s" in last_frame(buf.getvalue())


def test_stdout_is_left_alone_while_a_bar_is_shown(monkeypatch):
    """The bar is on stderr: a line printed to stdout meanwhile stays on stdout (a piped
    stdout must not receive the bar, nor lose lines to stderr); stderr lines go above it."""
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    with terminal.SimTimeProgress(DAY, console=tty_console(err)) as bar:
        print("a result line")
        bar.update(DAY / 2)
    assert out.getvalue() == "a result line\n"
    assert "a result line" not in err.getvalue() and "simulated days" in err.getvalue()


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    assert terminal.on_terminal(FakeTTY())
    assert not terminal.on_terminal(io.StringIO())
    assert not terminal.on_terminal(object())
    closed = io.StringIO()
    closed.close()  # isatty raises ValueError
    assert not terminal.on_terminal(closed)
    monkeypatch.setenv("TERM", "dumb")
    assert not terminal.on_terminal(FakeTTY())


def test_no_bar_unless_enabled_and_on_a_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(terminal.sim_progress(DAY, True), terminal.NoProgress)
    assert isinstance(terminal.runs_progress(True), terminal.NoProgress)
    monkeypatch.setattr("sys.stderr", FakeTTY())
    assert isinstance(terminal.sim_progress(DAY, False), terminal.NoProgress)
    assert isinstance(terminal.runs_progress(False), terminal.NoProgress)
    assert isinstance(terminal.sim_progress(DAY, True), terminal.SimTimeProgress)
    assert isinstance(terminal.runs_progress(True), terminal.RunsProgress)


# --- tables --------------------------------------------------------------------------------
RUN = {"scenario": "tiny", "seed": 7, "replication": 1, "horizon_s": 172800.0,
       "warmup_s": 3600.0, "events": 123456, "wall_s": 1.234, "throughput_per_h": 12.3456,
       "units_completed": 1234, "units_scrapped": 5, "wip_mean": 3.21,
       "lead_time_s": {"mean": 456.7, "p50": 400.0, "p95": 900.5},
       "bottleneck_ranking": ["press", "a_very_long_equipment_name"],
       "equipment": {
           "press": {"utilization": 0.91, "availability": 0.95, "performance": None,
                     "quality": 1.0, "oee": 0.8, "starved_s": 3600.0, "blocked_s": 1800.0,
                     "down_s": 7200.0, "faults": 3},
           "a_very_long_equipment_name": {
               "utilization": 0.5, "availability": None, "performance": 0.7, "quality": 0.99,
               "oee": None, "starved_s": 0.0, "blocked_s": 36000.0, "down_s": 0.0,
               "faults": 0}},
       "continuous_lines": {"cdc": {
           "diverted_kg_by_cause": {"feeder": 1.25}, "line_rate_kg_h": 20.0,
           "tablets_accepted": 1000.0, "tablets_produced": 1010.0, "units_out": 10,
           "api_content_mean_pct": 100.1, "api_content_rsd_pct": 1.2,
           "state_of_control_fraction": 0.99, "released_out_of_spec_kg": 0.0,
           "refills": {"api": 3}}},
       "mass_balance_rel_error": 1e-12,
       "orders": {"book": {"release_policy": "fifo", "orders_released_by_sequence": 0,
                           "orders_completed": 4, "orders_arrived": 5, "on_time_fraction": 0.75,
                           "mean_tardiness_s": 12.5, "max_tardiness_s": 50.0,
                           "mean_lead_time_s": 3000.0}}}
EXPERIMENT = {
    "experiment": "exp", "runs_ok": 4, "runs_failed": 0, "wall_s": 3.21, "engine": "serial",
    "confidence": 0.95, "warmup": {"method": "fixed"},
    "points": [{"point": 0, "factors": {"equipment.press.servers": 1}, "runs_ok": 2,
                "kpis": {"throughput_per_h": {"mean": 10.5, "half_width": 1.25},
                         "wip_mean": {"mean": 3.0, "half_width": None}}},
               {"point": 1, "factors": {}, "runs_ok": 2,
                "kpis": {"throughput_per_h": {"mean": 12.5, "half_width": float("nan")}}}]}
COMPARE = {
    "scenario": "/x/cdc-line.toml", "controller_a": "rule", "controller_b": "cautious",
    "replications": 3, "seed": 1, "confidence": 0.95,
    "kpis": [{"kpi": "throughput_per_h", "pairs": 3, "mean_a": 10.0, "mean_b": 11.0,
              "mean_difference": 1.0, "half_width": 0.5, "low": 0.5, "high": 1.5,
              "significant": True},
             {"kpi": "recovery_time_s", "pairs": 0, "mean_a": None, "mean_b": float("nan"),
              "mean_difference": None, "half_width": float("inf"), "low": None, "high": None,
              "significant": False}]}

# the text these printed before rich was used (captured from the code of commit 4800ee7)
PLAIN_RUN = (
    "\ntiny  seed 7  replication 1  horizon 2 d  warm-up 1 h  123,456 events in 1.23 s wall\n"
    "throughput 12.35 units/h   completed 1,234   scrapped 5   WIP 3.21\n"
    "lead time s: mean 456.7  p50 400  p95 900.5\n"
    "\nequipment             util     avail      perf      qual       OEE starved h blocked h"
    "    down h    faults\n"
    "press                0.910     0.950         -     1.000     0.800      1.00      0.50"
    "      2.00         3\n"
    "a_very_long_equipment_name     0.500         -     0.700     0.990         -      0.00"
    "     10.00      0.00         0\n"
    "(equipment listed by bottleneck rank: longest mean active period first)\n"
    "\ncontinuous line cdc: 20.0 kg/h, 1,000 tablets accepted of 1,010, 10 units, API 100.10 %"
    " (RSD 1.20 %), state of control 99.0 % of the time\n"
    "  diverted kg by cause: feeder 1.2; released out of spec 0 kg; refills api 3; mass balance"
    " error 1.0e-12\n"
    "\norders book (released by fifo): 4 of 5 completed, 75 % on time, mean tardiness 12.5 s,"
    " max 50 s, mean lead time 3,000 s\n")
PLAIN_EXPERIMENT = (
    "\nexperiment exp: 4 runs ok, 0 failed, 3.2 s wall, engine serial, 95% intervals, warm-up"
    " {'method': 'fixed'}\n"
    "\n point 0: equipment.press.servers=1  (2 runs)\n"
    "   throughput_per_h                                 10.5 ± 1.25\n"
    "   wip_mean                                            3 ± -\n"
    "\n point 1: base  (2 runs)\n"
    "   throughput_per_h                                 12.5 ± -\n")
PLAIN_COMPARE = (
    "compare cdc-line: A = rule, B = cautious; 3 replications with common random numbers (seed"
    " 1); paired differences B - A, 95% t-intervals\n"
    "kpi                           A mean      B mean       B - A  ± half-width               "
    "    interval pairs\n"
    "throughput_per_h                  10          11           1           0.5               "
    "  [0.5, 1.5]     3 *\n"
    "recovery_time_s                    -           -           -             -               "
    "      [-, -]     0\n"
    "(* the interval excludes 0; recovery time: mean from a unit's fault to the unit back in "
    "Execute, per run)")


def test_plain_text_when_stdout_is_not_a_terminal(capsys):
    cli_run.print_table(RUN)
    assert capsys.readouterr().out == PLAIN_RUN
    cli_experiment.print_experiment(EXPERIMENT)
    assert capsys.readouterr().out == PLAIN_EXPERIMENT
    assert format_compare(COMPARE) == PLAIN_COMPARE


def test_run_table_on_a_terminal(monkeypatch):
    buf = FakeTTY()
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "140")
    monkeypatch.setattr("sys.stdout", buf)
    cli_run.print_table(RUN)
    out = ANSI.sub("", buf.getvalue())
    assert out != PLAIN_RUN and "─" in out  # drawn by rich
    rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines() if ln.strip()}
    assert rows["press"] == ["0.910", "0.950", "-", "1.000", "0.800", "1.00", "0.50", "2.00",
                             "3"]
    assert rows["a_very_long_equipment_name"][-4:] == ["0.00", "10.00", "0.00", "0"]
    assert "(equipment listed by bottleneck rank" in out
    assert "continuous line cdc: 20.0 kg/h" in out and "orders book" in out


def test_experiment_and_compare_tables_on_a_terminal():
    buf = io.StringIO()
    terminal.print_experiment_table(EXPERIMENT, fmt, console=tty_console(buf))
    out = ANSI.sub("", buf.getvalue())
    lines = [ln.split() for ln in out.splitlines()]
    assert ["0", "equipment.press.servers=1", "throughput_per_h", "10.5", "1.25", "2"] in lines
    assert ["wip_mean", "3", "-"] in lines
    assert ["1", "base", "throughput_per_h", "12.5", "-", "2"] in lines
    two = {**EXPERIMENT, "points": [{**EXPERIMENT["points"][0], "factors": {
        "equipment.press.servers": 2, "buffers.q.capacity_units": 30}}]}
    buf = io.StringIO()
    terminal.print_experiment_table(two, fmt, console=tty_console(buf))
    lines = [ln.split() for ln in ANSI.sub("", buf.getvalue()).splitlines()]
    assert ["0", "equipment.press.servers=2", "throughput_per_h", "10.5", "1.25", "2"] in lines
    assert ["buffers.q.capacity_units=30"] in lines  # one factor a line
    buf = io.StringIO()
    terminal.print_compare_table(COMPARE, console=tty_console(buf))
    out = ANSI.sub("", buf.getvalue())
    lines = [ln.split() for ln in out.splitlines()]
    assert ["throughput_per_h", "10", "11", "1", "0.5", "[0.5,", "1.5]", "3", "*"] in lines
    assert ["recovery_time_s", "-", "-", "-", "-", "[-,", "-]", "0"] in lines
    assert "A = rule, B = cautious" in out and "(* the interval excludes 0" in out


def test_narrow_terminal_cuts_no_number():
    """At 60 columns names fold and headers wrap, but every number is printed whole."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=60, color_system=None)
    terminal.print_compare_table(COMPARE, console=console)
    out = ANSI.sub("", buf.getvalue())
    assert "…" not in out
    assert "[0.5, 1.5]" in out and "[-, -]" in out


# --- wiring --------------------------------------------------------------------------------
def test_a_run_on_a_terminal_draws_its_bar(monkeypatch, tmp_path):
    """``run_scenario(progress=True)`` with stderr a terminal: the bar ends at the horizon with
    a rate and an ETA; with stderr a pipe nothing is written."""
    from darkfab.scenarios import run_scenario
    from darkfab.scenarios.loader import load_scenario, resolve_path

    s = load_scenario(resolve_path("mm1"), ["scenario.horizon_s=43200", "scenario.warmup_s=0"])
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "140")
    err = FakeTTY()
    monkeypatch.setattr("sys.stderr", err)
    run_scenario(s, out_dir=tmp_path / "tty", progress=True, verify_run=False)
    line = last_frame(err.getvalue())
    assert "100.0%" in line and "0.50 / 0.50 simulated days" in line
    assert re.search(r"[0-9.]+ sim d/s", line) and "ETA 0:00:00" in line
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    run_scenario(s, out_dir=tmp_path / "pipe", progress=True, verify_run=False)
    assert err.getvalue() == ""
