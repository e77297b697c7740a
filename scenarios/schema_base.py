"""Base of the scenario schema: the strict model every table derives from, finite physical
quantities, names and folder names.

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

__all__ = ["Strict", "PositiveFloat", "NonNegativeFloat", "FiniteFloat", "MAX_COORDINATE_M",
           "Coordinate", "Name", "FolderName"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- physical quantities: finite, sane magnitudes --------------------------------------------
# Every physical quantity (duration, rate, mass, length, distribution parameter) is finite:
# TOML's nan and inf, and literals that overflow to inf (1e999), are refused with the field's
# path. These replace pydantic's PositiveFloat and NonNegativeFloat, which accept inf.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MAX_COORDINATE_M = 1e6
"""Largest |x_m|, |y_m| of a node (1,000 km): distances between nodes stay finite."""
Coordinate = Annotated[float, Field(ge=-MAX_COORDINATE_M, le=MAX_COORDINATE_M,
                                    allow_inf_nan=False)]


Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")


def _folder_name(v: str) -> str:
    if not _FOLDER_NAME.fullmatch(v):
        raise PydanticCustomError(
            "folder_name", "must be a safe folder name: 1 to 100 letters, digits, '_', '.' or "
            "'-', not starting with '.' or '-' (so never '.', '..' or a path)")
    return v


FolderName = Annotated[str, AfterValidator(_folder_name)]
"""A scenario name, used as a results folder name: letters, digits, ``_ . -``, not starting
with ``.`` or ``-`` (so never ``.``, ``..`` or a hidden folder), at most 100 characters."""
