"""A do-nothing controller: never wakes, never commands (units stay Stopped).

A baseline for tests and comparisons: what the plant does with no supervision at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from .commands import PlantCommand
from .observation import Event, Observation, PlantInfo

__all__ = ["DoNothing"]


class DoNothing:
    name = "do-nothing"
    wakes_on: frozenset[str] = frozenset()

    def reset(self, info: PlantInfo) -> None:
        pass

    def decide(self, events: Sequence[Event], observation: Observation) -> list[PlantCommand]:
        return []
