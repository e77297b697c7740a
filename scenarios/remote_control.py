"""The plant's controller, outside the process: the decision-cycle handshake of lockstep serving.

``darkfab serve SCENARIO --lockstep --remote-controller`` puts a :class:`RemoteController` in
the place of the scenario's controller. It has the scenario controller's ``name`` (the issuer
of its commands in the event log) and ``wakes_on`` (the events that wake it), so the plant
calls it exactly when it would call the controller in the process. At each call it keeps the
events and the observation as a *decision request* and answers nothing; the serving loop stops
the clock right after that event (:meth:`Simulation.advance_to` with ``until``), the OPC UA
server publishes the request (``Plant/Controller``), and the client's commands, sent as method
calls while the request is open, are collected in order. The next ``Plant/Acknowledge()``
hands them to the plant as the decision's answer, at the same simulated instant
(:meth:`ControlLoop.dispatch`: the decision latency and communication faults apply as in the
process), then the clock moves on. A client that sends nothing answers an empty decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from darkfab.control import Controller, Event, Observation, PlantCommand, PlantInfo

from .wire import encode_events, observation_json, plant_info_json

__all__ = ["RemoteController", "DecisionRequest"]


class DecisionRequest:
    """One open decision: its sequence number (1, 2, ...), time, events and observation (as
    published), and the commands answered so far."""

    def __init__(self, seq: int, time_s: float, events: Sequence[Event],
                 observation: Observation) -> None:
        self.seq = seq
        self.time_s = time_s
        self.events_json = encode_events(events)
        self.observation_json = observation_json(observation)
        self.answer: list[PlantCommand] = []


class RemoteController:
    """Stands in for ``template`` (the scenario's controller) while a client decides for it.

    Args:
        template: the controller the client runs; only its ``name`` and ``wakes_on`` are used.
        spec: the scenario's ``[controller]`` name and params (published, so that the client
            builds the same controller).
        seed, replication: the run's, for the client's ``controller.rng`` stream.
    """

    def __init__(self, template: Controller, spec: dict[str, Any], seed: int,
                 replication: int) -> None:
        self.name = getattr(template, "name", None) or spec["name"]
        self.wakes_on = getattr(template, "wakes_on", None)
        self.spec = spec
        self.seed = seed
        self.replication = replication
        self.info_json = ""
        self.request: DecisionRequest | None = None
        self.decisions = 0

    def reset(self, info: PlantInfo) -> None:
        self.info_json = plant_info_json(info, self.seed, self.replication)
        self.request = None
        self.decisions = 0

    def decide(self, events: Sequence[Event], observation: Observation) -> list[PlantCommand]:
        self.decisions += 1
        self.request = DecisionRequest(self.decisions, observation.time_s, events,
                                       observation)
        return []  # the answer comes later in this instant: see take_answer

    def pending(self) -> bool:
        """A decision request is open (the clock must stand still)."""
        return self.request is not None

    def add(self, cmd: PlantCommand) -> int:
        """Add ``cmd`` to the open decision's answer; its sequence number."""
        assert self.request is not None
        self.request.answer.append(cmd)
        return self.request.seq

    def take_answer(self) -> list[PlantCommand] | None:
        """Close the open decision: its commands (``None`` if none is open)."""
        r, self.request = self.request, None
        return None if r is None else r.answer


def open_remote(s: Any, **kw: Any) -> tuple[Any, RemoteController]:
    """Open a :class:`~darkfab.scenarios.simulation.Simulation` of scenario ``s`` with a
    :class:`RemoteController` in the place of its controller (``kw``: ``Simulation.open``'s,
    ``allow_code`` to build a ``module:Class`` controller named by the scenario)."""
    from darkfab.control import make_controller

    from .simulation import Simulation

    spec = s.controller
    template = make_controller(spec.name, spec.params, allow_code=kw.get("allow_code", False))
    seed = s.scenario.seed if kw.get("seed") is None else kw["seed"]
    remote = RemoteController(template, {"name": spec.name, "params": dict(spec.params)},
                              seed, kw.get("replication", 0))
    return Simulation.open(s, controller=remote, **kw), remote
