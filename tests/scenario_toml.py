"""Write scenario dictionaries as TOML (the shapes darkfab's scenario files use), for tests
that generate layouts. Shared by the fleet tests."""

from __future__ import annotations

import json
import math

__all__ = ["to_toml"]


def _val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        assert math.isfinite(v)
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_val(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    raise TypeError(type(v))


_NAMED = {"products", "nodes", "buffers", "sources", "sinks", "equipment", "arms"}


def to_toml(data: dict) -> str:
    out = []
    for key, value in data.items():
        if key in _NAMED:
            for name, body in value.items():
                out.append(f"[{key}.{name}]")
                out += [f"{k} = {_val(x)}" for k, x in body.items()]
        elif isinstance(value, list):
            for body in value:
                out.append(f"[[{key}]]")
                out += [f"{k} = {_val(x)}" for k, x in body.items()]
        else:
            out.append(f"[{key}]")
            out += [f"{k} = {_val(x)}" for k, x in value.items()]
        out.append("")
    return "\n".join(out)
