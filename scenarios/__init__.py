"""What to run: scenario schema and loader, builder, runner and the ``darkfab`` CLI.

The names below are imported on first use (PEP 562), so that ``darkfab --help`` and the
CLI's light commands do not pay for the simulator's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loader import ScenarioError, load_scenario, shipped_scenarios
    from .runner import RunResult, run_scenario

__all__ = ["ScenarioError", "load_scenario", "shipped_scenarios", "RunResult", "run_scenario"]

_WHERE = {"ScenarioError": "loader", "load_scenario": "loader", "shipped_scenarios": "loader",
          "RunResult": "runner", "run_scenario": "runner"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
