"""Progress bars and KPI tables on a terminal, drawn with rich; plain text anywhere else.

What goes to a pipe, a file or a CI log is the plain text the command line has always printed
(the callers keep it); only an interactive terminal gets a live progress bar (on stderr) and
boxed KPI tables (on stdout). rich costs about 60 ms of import time, so it is imported inside
the functions that draw, never at module level: ``darkfab --help``, ``list`` and ``check`` do
not load it, and neither does a run whose output is piped.

Progress shows the *simulation rate* in simulated days per wall-clock second and the time
remaining: for one run, the rate over rich's 30 s moving window of progress samples, and the
ETA as remaining simulated time over that rate; for the runs of an experiment or comparison, the
simulated days of the finished runs over the wall time so far, and the ETA as the remaining
runs times the wall time per finished run so far (runs finish in bursts on parallel workers, so
a moving window would swing).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = ["on_terminal", "SimTimeProgress", "RunsProgress", "print_run_table",
           "print_experiment_table", "print_compare_table", "SECONDS_PER_DAY"]

SECONDS_PER_DAY = 86_400.0
REFRESH_PER_SECOND = 4
"""Redraws of a live bar per wall second (from rich's refresh thread). A bar is drawn on stderr;
what is written to stderr while it is shown appears above it, while stdout is left alone (rich
would otherwise send it to the bar's stream: wrong when stdout is piped)."""


def on_terminal(stream: IO[str] | Any) -> bool:
    """``stream`` is an interactive terminal that can redraw a line (not a pipe, a file, nor
    ``TERM=dumb``)."""
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
    return tty and os.environ.get("TERM") != "dumb"


def _console(stream: IO[str]):
    from rich.console import Console
    return Console(file=stream, highlight=False, markup=False)


def _clock(seconds: float | None) -> str:
    """``H:MM:SS`` as rich's TimeRemainingColumn writes it; ``-:--:--`` when unknown."""
    if seconds is None:
        return "-:--:--"
    minutes, sec = divmod(int(math.ceil(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{sec:02d}"


def _rate(sim_days_per_s: float | None) -> str:
    """``1.23 sim d/s``; ``-`` before the first estimate."""
    if not sim_days_per_s:
        return "- sim d/s"
    return f"{sim_days_per_s:.3g} sim d/s"


class SimTimeProgress:
    """A live bar over the simulated time of one run: progress, simulated days done of the
    horizon, the rate in simulated days per wall second and the time remaining.

    ``console``: a ``rich.console.Console`` (default: one on ``sys.stderr``); ``get_time``: the
    wall clock in seconds (default :func:`time.monotonic`; tests pass a fake clock)."""

    def __init__(self, horizon_s: float, *, console=None,
                 get_time: Callable[[], float] | None = None) -> None:
        import sys

        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.horizon_s = float(horizon_s)
        self.progress = Progress(
            TextColumn("  "), BarColumn(bar_width=30),
            TextColumn("{task.percentage:5.1f}%"),
            TextColumn("{task.fields[days]}"), TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"), TimeRemainingColumn(),
            console=console or _console(sys.stderr), get_time=get_time or time.monotonic,
            refresh_per_second=REFRESH_PER_SECOND, redirect_stdout=False)
        self.task = self.progress.add_task("run", total=self.horizon_s or 1.0,
                                           days=self._days(0.0), rate=_rate(None))

    def _days(self, now_s: float) -> str:
        return (f"{now_s / SECONDS_PER_DAY:8.2f} / {self.horizon_s / SECONDS_PER_DAY:.2f} "
                "simulated days")

    def __enter__(self) -> SimTimeProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, now_s: float) -> None:
        """The simulation clock reached ``now_s`` (seconds)."""
        p = self.progress
        p.update(self.task, completed=now_s, days=self._days(now_s))
        speed = p.tasks[0].speed  # simulated seconds per wall second, rich's moving window
        p.update(self.task, rate=_rate(speed / SECONDS_PER_DAY if speed else None))

    @property
    def time_remaining_s(self) -> float | None:
        """rich's estimate of the wall seconds left (``None`` before two samples)."""
        return self.progress.tasks[0].time_remaining


class RunsProgress:
    """A live bar over the runs of an experiment or a comparison: runs done of runs planned,
    simulated days per wall second over the finished runs, elapsed time and time remaining.
    Runs are added as they are planned (a sequential experiment adds more as it goes)."""

    def __init__(self, *, console=None, get_time: Callable[[], float] | None = None) -> None:
        import sys

        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)

        self.get_time = get_time or time.monotonic
        self.t0 = self.get_time()
        self.simulated_s = 0.0
        self.time_remaining_s: float | None = None
        self.progress = Progress(
            TextColumn("  runs"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}", style="progress.remaining"),
            console=console or _console(sys.stderr), get_time=self.get_time,
            refresh_per_second=REFRESH_PER_SECOND, redirect_stdout=False)
        self.task = self.progress.add_task("runs", total=0, rate=_rate(None), eta=_clock(None))

    def __enter__(self) -> RunsProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def add(self, n: int) -> None:
        """``n`` more runs are planned."""
        self.progress.update(self.task, total=self.progress.tasks[0].total + n)
        self._estimate()

    def step(self, simulated_s: float | None) -> None:
        """One run finished, having simulated ``simulated_s`` seconds (``None``: unknown, e.g. a
        failed run)."""
        self.simulated_s += simulated_s or 0.0
        wall = self.get_time() - self.t0
        rate = self.simulated_s / SECONDS_PER_DAY / wall if wall > 0 else None
        self.progress.update(self.task, advance=1, rate=_rate(rate))
        self._estimate()

    def _estimate(self) -> None:
        """ETA = runs left × wall seconds per finished run so far."""
        t = self.progress.tasks[0]
        done, left = t.completed, (t.total or 0) - t.completed
        wall = self.get_time() - self.t0
        self.time_remaining_s = left * wall / done if done and wall > 0 else None
        self.progress.update(self.task, eta=_clock(self.time_remaining_s))


class NoProgress:
    """The same interface, drawing nothing (not a terminal, ``--quiet``, ``--no-progress``)."""

    time_remaining_s = None

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, now_s: float) -> None:
        pass

    def add(self, n: int) -> None:
        pass

    def step(self, simulated_s: float | None) -> None:
        pass


def sim_progress(horizon_s: float, enabled: bool) -> SimTimeProgress | NoProgress:
    """A run's bar on stderr if ``enabled`` and stderr is a terminal, else nothing drawn."""
    import sys
    return SimTimeProgress(horizon_s) if enabled and on_terminal(sys.stderr) else NoProgress()


def runs_progress(enabled: bool) -> RunsProgress | NoProgress:
    """An experiment's or comparison's bar on stderr if ``enabled`` and stderr is a terminal."""
    import sys
    return RunsProgress() if enabled and on_terminal(sys.stderr) else NoProgress()


# --- KPI tables ---------------------------------------------------------------------------
def _table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[str]],
           left: int = 1, caption: str | None = None, bold: Sequence[bool] = (),
           sections: Sequence[bool] = ()):
    """A rich table: the first ``left`` columns left-aligned text that may fold on a narrow
    terminal, the others right-aligned numbers that are never cut (their headers wrap)."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False,
              title_justify="left", caption_justify="left", pad_edge=False,
              collapse_padding=True)
    for i, h in enumerate(headers):
        widest = max((len(r[i]) for r in rows), default=1)
        if i < left:
            t.add_column(h, justify="left", overflow="fold", min_width=min(widest, 12))
        else:
            t.add_column(h, justify="right", overflow="fold", min_width=widest)
    for j, r in enumerate(rows):
        t.add_row(*r, style="bold" if j < len(bold) and bold[j] else None,
                  end_section=j < len(sections) and sections[j])
    return t


def print_run_table(head: Sequence[str], headers: Sequence[str], rows: Sequence[Sequence[str]],
                    note: str, console=None) -> None:
    """A run's header lines, then its equipment KPIs as a table (one row per unit, cells
    already formatted) with ``note`` as the caption."""
    console = console or _console_stdout()
    for line in head:
        console.print(line)
    console.print()
    _print(console, _table(None, headers, rows, caption=note))


def print_experiment_table(sm: dict[str, Any], fmt: Callable[[Any], str],
                           console=None) -> None:
    """An experiment's KPI means and half-widths, one row per design point and KPI."""
    console = console or _console_stdout()
    rows, ends = [], []
    for pt in sm["points"]:
        desc = "\n".join(f"{k}={v}" for k, v in pt["factors"].items()) or "base"
        items = list(pt["kpis"].items())
        for j, (kpi, ci) in enumerate(items):
            hw = ci["half_width"]
            first = j == 0
            rows.append([str(pt["point"]) if first else "", desc if first else "", kpi,
                         fmt(ci["mean"]), fmt(hw) if hw is not None else "-",
                         str(pt["runs_ok"]) if first else ""])
            ends.append(j == len(items) - 1)
    _print(console, _table(None, ("point", "factors", "kpi", "mean", "± half-width", "runs"),
                         rows, left=3, sections=ends))


def print_compare_table(sm: dict[str, Any], console=None) -> None:
    """A comparison's KPIs: both means, the paired difference B − A, its interval, the number
    of pairs; rows whose interval excludes 0 in bold with a ``*``."""
    import math
    from pathlib import Path

    def f(x):
        return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
            else f"{x:,.4g}"
    console = console or _console_stdout()
    title = (f"compare {Path(sm['scenario']).stem}: A = {sm['controller_a']}, "
             f"B = {sm['controller_b']}; {sm['replications']} replications with common random "
             f"numbers (seed {sm['seed']}); paired differences B - A, "
             f"{sm['confidence']:.0%} t-intervals")
    rows = [[r["kpi"], f(r["mean_a"]), f(r["mean_b"]), f(r["mean_difference"]),
             f(r["half_width"]), f"[{f(r['low'])}, {f(r['high'])}]", str(r["pairs"]),
             "*" if r["significant"] else ""] for r in sm["kpis"]]
    _print(console, _table(title, ("kpi", "A mean", "B mean", "B - A", "± half-width", "interval",
                                 "pairs", ""), rows,
                         caption="(* the interval excludes 0; recovery time: mean from a "
                         "unit's fault to the unit back in Execute, per run)",
                         bold=[r["significant"] for r in sm["kpis"]]))


def _print(console, table) -> None:
    """On a terminal too narrow for the table's shortest layout, its lines run past the edge
    (the terminal wraps them) rather than being cut: no column is lost."""
    console.print(table, crop=False)


def _console_stdout():
    import sys
    return _console(sys.stdout)
