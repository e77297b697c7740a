"""Scale every time parameter of a scenario by k, by walking its fields by their units (not with
darkfab's own code), and write it as TOML.

Units are in darkfab's field names, so a field's suffix says how it scales when the clock is
stretched by k: durations (``_s``, ``_h``, ``values_s``, ``work_s_per_unit``) × k; speeds
(``_m_s``), rates (``_per_h``, ``_per_s``, ``_kg_s``, ``_kg_h``) and powers (``_kw``: energy per
unit time, so that a battery drains and charges by the same energy per event) ÷ k. Everything
else (counts, probabilities, coefficients of variation, shapes, lengths, energies per metre) is
dimensionless in time and stays. Distributions are scale families in their ``_s`` parameters, so
a sample with the same random number is k times the original (to rounding).
"""

from __future__ import annotations

import json
import math

__all__ = ["scale_times", "to_toml"]

NOT_TIME = {"time_limit_s"}  # a solver's wall-clock limit, not simulated time
PER_TIME = ("_m_s", "_per_h", "_per_s", "_kg_s", "_kg_h", "_kw")
TIME = ("_s", "_h", "_s_per_unit")


def _factor(key: str, k: float) -> float:
    if key in NOT_TIME:
        return 1.0
    if key.endswith(PER_TIME):
        return 1.0 / k
    if key.endswith(TIME):
        return k
    return 1.0


def _scale(value, f: float):
    if f == 1.0 or value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value) * f
    if isinstance(value, list):
        return [_scale(v, f) for v in value]
    if isinstance(value, dict):  # e.g. acting_state_s = {state: seconds}
        return {n: _scale(v, f) for n, v in value.items()}
    raise TypeError(f"cannot scale {value!r}")


def scale_times(data, k: float):
    """A copy of the scenario dictionary ``data`` with every time parameter scaled by ``k``."""
    if isinstance(data, dict):
        out = {}
        for key, v in data.items():
            f = _factor(key, k) if isinstance(key, str) else 1.0
            out[key] = _scale(v, f) if f != 1.0 and not _is_table(v) else scale_times(v, k)
        return out
    if isinstance(data, list):
        return [scale_times(v, k) for v in data]
    return data


def _is_table(v) -> bool:
    """A table of named things (not a {name: seconds} map)."""
    return isinstance(v, dict) and any(isinstance(x, (dict, list)) for x in v.values())


def _val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        assert math.isfinite(v), v
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_val(x)}"
                                for k, x in v.items() if x is not None) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    raise TypeError(type(v))


def to_toml(data: dict) -> str:
    """The scenario dictionary as TOML: one root key per section, inline tables, no nulls."""
    return "\n".join(f"{k} = {_val(v)}" for k, v in data.items() if v is not None) + "\n"
