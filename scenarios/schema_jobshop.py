"""Job-shop scenario files: ``[scenario]`` and ``[jobshop]`` (an instance, deterministic times,
no transport) and the check that the instance can be read.

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, PositiveInt, field_validator
from pydantic_core import PydanticCustomError

from .schema_base import FolderName, PositiveFloat, Strict

__all__ = ["JOBSHOP_SCHEDULERS", "JobShopMeta", "JobShopSpec", "JobShopScenario",
           "jobshop_errors"]


def _jobshop_schedulers() -> list[str]:
    from darkfab.control.dispatching import RULES
    return ["cpsat", *sorted(RULES)]


JOBSHOP_SCHEDULERS = _jobshop_schedulers()
"""``cpsat`` (the optimizer) and every registered dispatching rule."""


class JobShopMeta(Strict):
    """``[scenario]`` of a job-shop scenario: no warm-up; the run ends when the last job does,
    or at ``horizon_s`` (a cap) with a partial result."""

    name: FolderName
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0  # CP-SAT's random seed
    horizon_s: PositiveFloat | None = None


class JobShopSpec(Strict):
    """``[jobshop]``: a job-shop instance (deterministic times, no transport) and how the
    machines are sequenced."""

    instance: Annotated[str, Field(min_length=1)]  # shipped name (ft06, ft10) or a file path
    scheduler: str = "cpsat"  # cpsat or a dispatching rule (fifo, spt, edd, cr, atc, ...)
    time_limit_s: PositiveFloat = 60.0  # CP-SAT wall-clock limit
    deterministic_time_limit: PositiveFloat | None = None  # CP-SAT work limit; default 1/40 of it
    num_workers: PositiveInt = 2  # CP-SAT threads
    deterministic: bool = True  # CP-SAT interleaved deterministic search
    hint_rule: str | None = "mwkr"  # dispatching rule of CP-SAT's warm start
    time_unit_s: PositiveFloat = 1.0  # simulated seconds per instance time unit
    due_date_allowance: PositiveFloat = 1.5  # TWK due dates d_j = allowance * work of job j
    atc_k: PositiveFloat = 2.0  # ATC look-ahead parameter

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        if v not in JOBSHOP_SCHEDULERS:
            raise PydanticCustomError("scheduler", f"unknown scheduler {v!r}; known: "
                                      + ", ".join(JOBSHOP_SCHEDULERS))
        return v

    @field_validator("hint_rule")
    @classmethod
    def _hint(cls, v: str | None) -> str | None:
        if v is not None and v not in JOBSHOP_SCHEDULERS[1:]:
            raise PydanticCustomError("hint_rule", f"unknown dispatching rule {v!r}; known: "
                                      + ", ".join(JOBSHOP_SCHEDULERS[1:]))
        return v


class JobShopScenario(Strict):
    """A job-shop scenario: ``[scenario]`` and ``[jobshop]``, no plant tables."""

    scenario: JobShopMeta
    jobshop: JobShopSpec


def jobshop_errors(s: JobShopScenario):
    """Yield ``(path, message)`` if the instance cannot be found or parsed."""
    from darkfab.control.jobshop import JobShopFormatError, load_instance, shipped_instances

    from .toml_input import MAX_FILE_BYTES

    inst = s.jobshop.instance
    if inst not in shipped_instances():
        try:  # a regular file of bounded size: never /dev/zero, a FIFO or a 10 GB file
            if not Path(inst).is_file():
                yield ("jobshop.instance", f"no shipped instance or file {inst!r}")
                return
            if Path(inst).stat().st_size > MAX_FILE_BYTES:
                yield ("jobshop.instance", f"{inst}: the file is larger than the limit of "
                       f"{MAX_FILE_BYTES:,} bytes")
                return
        except (OSError, ValueError) as e:  # ValueError: a NUL in the name
            yield ("jobshop.instance", f"{inst!r}: {e}")
            return
    try:
        load_instance(inst)
    except FileNotFoundError:
        yield ("jobshop.instance", f"no shipped instance or file {inst!r}")
    except (JobShopFormatError, OSError, UnicodeDecodeError, ValueError) as e:
        yield ("jobshop.instance", f"{inst}: {e}")
