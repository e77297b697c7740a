"""Helpers shared by the verbs of the ``darkfab`` command line: the default scenario, the
horizon options, consent to user code and unfinished run folders.

Part of the ``darkfab`` command line (:mod:`darkfab.scenarios.cli`, which imports this module
at start-up: standard library only at the top).
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["DEFAULT_SCENARIO", "with_horizon", "is_code", "unfinished"]

DEFAULT_SCENARIO = "cdc-line"


def with_horizon(args) -> list[str]:
    """``--set`` overrides, then ``--days`` / ``--hours`` as ``scenario.horizon_s``."""
    out = list(args.overrides)
    if args.days is not None:
        out.append(f"scenario.horizon_s={args.days * 86400.0}")
    if args.hours is not None:
        out.append(f"scenario.horizon_s={args.hours * 3600.0}")
    return out


def is_code(name: str) -> bool:
    """True if the controller ``name`` is user code (``module:Class``), run only with consent."""
    from darkfab.control.registry import is_code_reference
    return is_code_reference(name)


def unfinished(verb: str, folder: Path) -> bool:
    """Print why ``folder`` cannot be read yet, if it has unfinished tables (reading never
    recovers by itself: see darkfab.scenarios.recover)."""
    from .recover import unfinished_message

    why = unfinished_message(folder)
    if why is not None:
        print(f"darkfab {verb}: {why}", file=sys.stderr)
    return why is not None
