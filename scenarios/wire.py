"""What a controller sees and sends, on the wire: JSON for the policy API's frozen types, and
the OPC UA method that carries each command.

A controller outside the process (``darkfab supervise``, :mod:`.supervise`) reads the plant's
static facts (:class:`~darkfab.control.PlantInfo`) and, at each decision, the events that woke
it and the :class:`~darkfab.control.Observation` it would have been given in the process, as
JSON strings served by the OPC UA server (:mod:`.opcua_server`). The encoding is lossless:
floats as their shortest repr (NaN and infinities as JSON's ``NaN`` / ``Infinity``), tuples,
mappings with integer keys (``Observation.alarms``) and PackML states decoded back to their
types, so that a policy decides on the wire exactly as in the process.

Commands travel as OPC UA method calls, one per command (:data:`METHODS`): PackML commands
as the unit's own methods (``Units/<unit>.Hold(reason)``), set-points and modes as the unit's
``SetPoint(name, value, reason)`` and ``SetUnitMode(mode, reason)``, every other command type
as a method of ``Plant/Controller`` named after it, its arguments the command's fields in
order.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from darkfab.control import (COMMAND_TYPES, ChangeMode, Event, Observation, PackMLCommand,
                             PlantInfo, SetPoint)
from darkfab.control.observation import LotObs, LotView
from darkfab.factory.packml import State
from darkfab.factory.random_streams import RandomStreams

__all__ = ["encode", "decode", "encode_events", "decode_events", "observation_json",
           "observation_from_json", "plant_info_json", "plant_info_from_json",
           "command_call", "CONTROLLER_COMMANDS", "command_fields"]

CONTROLLER_COMMANDS = tuple(t for t in COMMAND_TYPES
                            if t not in (PackMLCommand, SetPoint, ChangeMode))
"""Command types sent as methods of ``Plant/Controller`` (the others are unit methods)."""


def encode(x: Any) -> Any:
    """A JSON-ready copy of ``x`` (frozen dataclasses as dicts of their fields)."""
    if isinstance(x, LotView):
        index, last = x.raw_lot_index()
        return {"lots": {k: encode(v) for k, v in x.items()}, "by_raw": index,
                "last_seen": last}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: encode(getattr(x, f.name)) for f in dataclasses.fields(x)
                if not isinstance(getattr(x, f.name), np.random.Generator)}
    if isinstance(x, State):
        return x.value
    if isinstance(x, Mapping):
        return {str(k): encode(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [encode(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def decode(tp: Any, data: Any) -> Any:
    """``data`` (from :func:`encode`) back to type ``tp`` (a type hint of the policy API)."""
    if tp is Any or data is None:
        return data
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return decode(inner[0], data)
    if tp is LotView:
        return _WireLots(data)
    if dataclasses.is_dataclass(tp):
        kw = {n: decode(h, data[n]) for n, h in _fields(tp) if n in data}
        return tp(**kw)
    if tp is State:
        return State(data)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v) for v in data)
        return tuple(decode(a, v) for a, v in zip(args, data))
    if origin in (Mapping, dict, typing.Mapping) or tp in (Mapping, dict):
        kt, vt = args if args else (str, Any)
        return MappingProxyType({decode(kt, k) if kt is not str else k: decode(vt, v)
                                 for k, v in data.items()})
    if tp is float:
        return float(data)
    if tp is int:
        return int(data)
    return data


@functools.cache
def _fields(tp: type) -> tuple[tuple[str, Any], ...]:
    """A dataclass's fields with their resolved type hints (``get_type_hints`` is slow)."""
    hints = typing.get_type_hints(tp)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(tp))


class _WireLots(LotView):
    """A :class:`~darkfab.control.observation.LotView` read from the wire."""

    __slots__ = ("_lots", "_by_raw", "_last")

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(None)
        self._lots = {k: decode(LotObs, v) for k, v in data["lots"].items()}
        self._by_raw = data["by_raw"]
        self._last = data["last_seen"]

    def __getitem__(self, lot: str) -> LotObs:
        return self._lots[lot]

    def __iter__(self):
        return iter(self._lots)

    def __len__(self) -> int:
        return len(self._lots)

    def containing(self, raw_lot: str, min_fraction: float = 0.0) -> tuple[str, ...]:
        return tuple(k for k, x in self._by_raw.get(raw_lot, {}).items() if x > min_fraction)

    def last_seen(self, raw_lot: str) -> float | None:
        return self._last.get(raw_lot)

    def raw_lot_index(self) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        return ({k: dict(v) for k, v in self._by_raw.items()}, dict(self._last))


def _dumps(x: Any) -> str:
    return json.dumps(encode(x), separators=(",", ":"))


def observation_json(obs: Observation) -> str:
    return _dumps(obs)


def observation_from_json(text: str) -> Observation:
    return decode(Observation, json.loads(text))


def encode_events(events: typing.Sequence[Event]) -> str:
    return json.dumps([[e.time_s, e.kind, e.source, e.detail] for e in events])


def decode_events(text: str) -> tuple[Event, ...]:
    return tuple(Event(float(t), k, s, d) for t, k, s, d in json.loads(text))


def plant_info_json(info: PlantInfo, seed: int, replication: int) -> str:
    """``info`` without its random stream, which the other side derives from ``seed`` and
    ``replication`` (the plant's named stream ``controller.rng``)."""
    d = encode(info)
    d["_stream"] = {"seed": seed, "replication": replication}
    return json.dumps(d, separators=(",", ":"))


def plant_info_from_json(text: str) -> PlantInfo:
    d = json.loads(text)
    stream = d.pop("_stream")
    info = decode(PlantInfo, d)
    rng = RandomStreams(stream["seed"], stream["replication"]).stream("controller.rng")
    return dataclasses.replace(info, rng=rng)


# --- commands as OPC UA method calls ---------------------------------------------------------
def command_fields(cls: type) -> list[tuple[str, Any]]:
    """The fields of a command type with their type hints, in order."""
    return list(_fields(cls))


def command_call(cmd: Any) -> tuple[str | None, str, list[Any]]:
    """The OPC UA call that carries ``cmd``: (unit or ``None`` for ``Plant/Controller``,
    method name, arguments)."""
    if isinstance(cmd, PackMLCommand):
        c = cmd.command
        return cmd.unit, getattr(c, "value", str(c)), [cmd.reason]
    if isinstance(cmd, SetPoint):
        return cmd.unit, "SetPoint", [cmd.name, float(cmd.value), cmd.reason]
    if isinstance(cmd, ChangeMode):
        return cmd.unit, "SetUnitMode", [cmd.mode, cmd.reason]
    cls = type(cmd)
    if cls not in CONTROLLER_COMMANDS:
        raise TypeError(f"{cmd!r} is not a darkfab command")
    return None, cls.__name__, [_arg(getattr(cmd, n)) for n, _ in command_fields(cls)]


def _arg(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
