"""What to run: scenario schema and loader, builder, runner and the ``darkfab`` CLI."""

from .loader import ScenarioError, load_scenario, shipped_scenarios
from .runner import RunResult, run_scenario

__all__ = ["ScenarioError", "load_scenario", "shipped_scenarios", "RunResult", "run_scenario"]
