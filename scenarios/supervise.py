"""``darkfab supervise opc.tcp://HOST:PORT``: a darkfab controller as an OPC UA client.

The other end is ``darkfab serve SCENARIO --lockstep --remote-controller``
(:mod:`.remote_control`, :mod:`.opcua_controller`). The client

1. calls ``Plant/Controller.Attach()``, which makes its session the controller and returns the
   scenario's controller spec (name and params) and the static plant
   (:class:`~darkfab.control.PlantInfo`); builds that controller (or the one named by
   ``controller``) and resets it;
2. calls ``Plant/Controller.Advance()`` (``Plant/Acknowledge()`` plus the decision in the same
   round trip): the plant advances one cycle, or to the controller's next decision; if a new
   decision is open, it calls ``decide`` on its events and observation and sends each command
   as an OPC UA method call
   (:func:`~darkfab.scenarios.wire.command_call`), in order: they are that decision's answer,
   handed to the plant by the next ``Acknowledge``;
3. repeats until ``Plant/Done``, then disconnects.

The controller decides on the same events and observation as in the process, and its commands
reach the plant through the same path (decision latency, communication faults), so a run
supervised over the wire has the same event log, row for row, as the run in the process (only
the run id differs: the scenario records that its controller was remote).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from darkfab.control import make_controller

from .opcua_server import NAMESPACE
from .wire import command_call, decode_events, observation_from_json, plant_info_from_json

__all__ = ["supervise", "SuperviseStats"]

_log = logging.getLogger("darkfab.supervise")


@dataclass
class SuperviseStats:
    decisions: int = 0
    commands: int = 0
    refused: int = 0  # commands the server answered with a Bad status code
    cycles: int = 0
    plant_clock_s: float = 0.0
    controller: str = ""


async def supervise(url: str, *, controller: Any = None, params: dict | None = None,
                    allow_code: bool = False, timeout_s: float = 60.0,
                    configure: Callable[[Client], Any] | None = None,
                    report: Callable[[str], None] | None = None) -> SuperviseStats:
    """Supervise the plant served at ``url`` until its horizon (see the module docstring).

    Args:
        url: the server's endpoint, ``opc.tcp://host:port/darkfab/``.
        controller: a registered controller name (``module:Class`` with ``allow_code``) or a
            controller object, instead of the served one (default: the served scenario's
            ``[controller]``, built with its params). The plant wakes it on the served
            controller's topics (``wakes_on``) and logs its commands under the served
            controller's name: serve with ``--controller`` to change those.
        params: the parameters of ``controller`` given by name (default: the served ones
            when the name is the served one's, else none).
        allow_code: build a ``module:Class`` controller, also one the server names (code on
            this machine named by the other end: only with the user's consent, the CLI's
            ``--allow-code``).
        timeout_s: OPC UA request timeout, wall seconds (a server that stops answering ends
            the run with an error rather than a hang).
        configure: called with the client before connecting (security: user, certificate).
        report: progress lines (default: none).
    """
    client = Client(url, timeout=timeout_s)
    if configure is not None:
        r = configure(client)
        if hasattr(r, "__await__"):
            await r
    stats = SuperviseStats()
    async with client:
        idx = await client.get_namespace_index(NAMESPACE)
        plant = await client.nodes.objects.get_child(f"{idx}:Plant")
        try:
            ctl = await plant.get_child(f"{idx}:Controller")
        except ua.UaError:
            raise RuntimeError(f"{url}: the server has no Plant/Controller: serve with "
                               "--lockstep --remote-controller") from None
        spec_json, info_json = await ctl.call_method(f"{idx}:Attach")
        spec = json.loads(spec_json)
        if controller is not None and not isinstance(controller, str):
            policy, name = controller, type(controller).__name__
        else:
            name = controller or spec["name"]
            p = params if params is not None else (spec["params"] if name == spec["name"]
                                                   else {})
            policy = make_controller(name, p, allow_code=allow_code)
        policy.reset(plant_info_from_json(info_json))
        stats.controller = str(getattr(policy, "name", name))
        units: dict[str, Any] = {}
        unit_folder = await plant.get_child(f"{idx}:Units")
        last = 0
        while True:
            clock, done, seq, events_json, obs_json = await ctl.call_method(f"{idx}:Advance")
            stats.cycles += 1
            stats.plant_clock_s = float(clock)
            if seq and seq != last:
                last = seq
                cmds = policy.decide(decode_events(events_json),
                                     observation_from_json(obs_json))
                stats.decisions += 1
                for cmd in cmds or ():
                    unit, method, args = command_call(cmd)
                    if unit is None:
                        target = ctl
                    else:
                        target = units.get(unit)
                        if target is None:
                            target = units[unit] = await unit_folder.get_child(
                                [f"{idx}:{unit}"])  # a list: names contain dots
                    stats.commands += 1
                    try:
                        await target.call_method(f"{idx}:{method}", *args)
                    except UaStatusCodeError as e:
                        stats.refused += 1
                        _log.warning("%s refused: %s", cmd, e)
            elif done:
                break
            if report is not None and stats.cycles % 1000 == 0:
                report(f"supervise: t = {stats.plant_clock_s:.0f} s, {stats.decisions} "
                       f"decisions, {stats.commands} commands")
    return stats
