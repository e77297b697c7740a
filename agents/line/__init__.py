"""Continuous lines: the continuous direct compression line and its parts."""

from .line import ContinuousLine, FeederStation, LineFailure, QualitySpec

__all__ = ["ContinuousLine", "FeederStation", "LineFailure", "QualitySpec"]
