"""``darkfab report``, ``view``, ``plot`` and ``funnel``: the HTML report, the animated view
and the layout plot of a run folder, and a line's funnel plot of a scenario.

Part of the ``darkfab`` command line (:mod:`darkfab.scenarios.cli` parses the arguments and
imports this module when one of its verbs runs). Exit codes: see there.
"""

from __future__ import annotations

import sys

from .cli_common import unfinished

__all__ = ["cmd_report", "cmd_view", "cmd_plot", "cmd_funnel"]


def cmd_funnel(args) -> int:
    from .funnel import default_funnel_path, write_funnel_png
    from .loader import load_scenario
    from .schema import JobShopScenario

    s = load_scenario(args.scenario, args.overrides)
    if isinstance(s, JobShopScenario) or not s.continuous_lines:
        print(f"darkfab: scenario {s.scenario.name!r} has no continuous line", file=sys.stderr)
        return 2
    if args.line is not None and args.line not in s.continuous_lines:
        print(f"darkfab: no continuous line {args.line!r}; lines: "
              + ", ".join(sorted(s.continuous_lines)), file=sys.stderr)
        return 2
    out = args.out or default_funnel_path(s.scenario.name, args.line)
    print(f"funnel plot: {write_funnel_png(s, out, args.line)}")
    return 0


def cmd_plot(args) -> int:
    from .report_layout import write_layout_png

    if unfinished("plot", args.folder):
        return 2
    try:
        path = write_layout_png(args.folder, args.out, args.labels)
    except ValueError as e:
        print(f"darkfab plot: {e}", file=sys.stderr)
        return 2
    print(f"layout: {path}")
    return 0


def cmd_view(args) -> int:
    from .view import write_view

    if unfinished("view", args.folder):
        return 2
    try:
        path = write_view(args.folder, args.out)
    except (ValueError, FileNotFoundError) as e:
        print(f"darkfab view: {e}", file=sys.stderr)
        return 2
    print(f"view: {path}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    if unfinished("report", args.folder):
        return 2
    try:
        path = write_report(args.folder, args.out)
    except ValueError as e:
        print(f"darkfab report: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
